// The services table: which release each service serves and which one stands by.

import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { num, str, strOrNull, type Row } from './row.ts';
import type { ServiceState } from './types.ts';

export class ServiceTable {
  #get: StatementSync;
  #upsert: StatementSync;

  constructor(db: DatabaseSync) {
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
}

function toService(row: Row): ServiceState {
  return {
    name: str(row, 'name'),
    currentRelease: strOrNull(row, 'current_release'),
    standbyRelease: strOrNull(row, 'standby_release'),
    updatedAt: num(row, 'updated_at'),
  };
}
