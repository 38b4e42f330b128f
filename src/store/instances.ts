// The instances table: every app process baton started, so a restarted daemon
// can re-adopt the ones still running.

import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { BatonError } from '../core/errors.ts';
import { num, str, type Row } from './row.ts';
import type { InstanceRow } from './types.ts';

export class InstanceTable {
  #upsert: StatementSync;
  #setState: StatementSync;
  #delete: StatementSync;
  #listAll: StatementSync;
  #listByService: StatementSync;

  constructor(db: DatabaseSync) {
    this.#upsert = db.prepare(`
      INSERT INTO instances (id, service, release, release_dir, pid, start_time, port, log_file, state, created_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET
        service = excluded.service,
        release = excluded.release,
        release_dir = excluded.release_dir,
        pid = excluded.pid,
        start_time = excluded.start_time,
        port = excluded.port,
        log_file = excluded.log_file,
        state = excluded.state,
        created_at = excluded.created_at`);
    this.#setState = db.prepare('UPDATE instances SET state = ? WHERE id = ?');
    this.#delete = db.prepare('DELETE FROM instances WHERE id = ?');
    this.#listAll = db.prepare('SELECT * FROM instances ORDER BY created_at, rowid');
    this.#listByService = db.prepare('SELECT * FROM instances WHERE service = ? ORDER BY created_at, rowid');
  }

  upsert(i: InstanceRow): void {
    this.#upsert.run(i.id, i.service, i.release, i.releaseDir, i.pid, i.startTime, i.port, i.logFile, i.state, i.createdAt);
  }

  setState(id: string, state: string): void {
    const r = this.#setState.run(state, id);
    // The caller believes the state is persisted before it acts; make a wrong id loud.
    if (Number(r.changes) === 0) throw new BatonError('INTERNAL', `store: no instance with id ${id}`);
  }

  delete(id: string): void {
    this.#delete.run(id);
  }

  list(service?: string): InstanceRow[] {
    const rows = service === undefined ? this.#listAll.all() : this.#listByService.all(service);
    return rows.map(toInstance);
  }
}

function toInstance(row: Row): InstanceRow {
  return {
    id: str(row, 'id'),
    service: str(row, 'service'),
    release: str(row, 'release'),
    releaseDir: str(row, 'release_dir'),
    pid: num(row, 'pid'),
    startTime: str(row, 'start_time'),
    port: num(row, 'port'),
    logFile: str(row, 'log_file'),
    state: str(row, 'state'),
    createdAt: num(row, 'created_at'),
  };
}
