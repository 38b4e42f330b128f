// The services table: which release each service serves and which one stands by.

import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { num, str, strOrNull, type Row } from './row.ts';
import type { ServiceState } from './types.ts';

export class ServiceTable {
  #get: StatementSync;
  #upsert: StatementSync;
  #setMaintenance: StatementSync;
  #setPaused: StatementSync;

  constructor(db: DatabaseSync) {
    this.#setMaintenance = db.prepare(`
      INSERT INTO services (name, maintenance, updated_at) VALUES (?, ?, ?)
      ON CONFLICT (name) DO UPDATE SET maintenance = excluded.maintenance, updated_at = excluded.updated_at`);
    this.#setPaused = db.prepare(`
      INSERT INTO services (name, paused, updated_at) VALUES (?, ?, ?)
      ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at`);
    this.#get = db.prepare('SELECT * FROM services WHERE name = ?');
    this.#upsert = db.prepare(`
      INSERT INTO services (name, current_release, standby_release, updated_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (name) DO UPDATE SET
        current_release = excluded.current_release,
        standby_release = excluded.standby_release,
        updated_at = excluded.updated_at`);
  }

  get(name: string): ServiceState | null {
    const row = this.#get.get(name);
    return row ? toService(row) : null;
  }

  setReleases(name: string, currentRelease: string | null, standbyRelease: string | null, now: number): void {
    this.#upsert.run(name, currentRelease, standbyRelease, now);
  }

  setMaintenance(name: string, maintenance: ServiceState['maintenance'], now: number): void {
    this.#setMaintenance.run(name, maintenance === null ? null : JSON.stringify(maintenance), now);
  }

  setPaused(name: string, paused: boolean, now: number): void {
    this.#setPaused.run(name, paused ? 1 : 0, now);
  }
}

function toService(row: Row): ServiceState {
  return {
    name: str(row, 'name'),
    currentRelease: strOrNull(row, 'current_release'),
    standbyRelease: strOrNull(row, 'standby_release'),
    maintenance: parseMaintenance(strOrNull(row, 'maintenance')),
    paused: num(row, 'paused') === 1,
    updatedAt: num(row, 'updated_at'),
  };
}

function parseMaintenance(text: string | null): ServiceState['maintenance'] {
  if (text === null) return null;
  try {
    const v = JSON.parse(text) as { message?: unknown; since?: unknown };
    return { message: typeof v.message === 'string' ? v.message : '', since: typeof v.since === 'number' ? v.since : 0 };
  } catch {
    return { message: '', since: 0 };
  }
}
