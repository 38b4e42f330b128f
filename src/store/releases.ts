// The releases table: one row per immutable release directory.

import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { BatonError } from '../core/errors.ts';
import { num, numOrNull, str, type Row } from './row.ts';
import type { NewRelease, ReleaseRow } from './types.ts';

export class ReleaseTable {
  #add: StatementSync;
  #get: StatementSync;
  #list: StatementSync;
  #markDeployed: StatementSync;
  #delete: StatementSync;

  constructor(db: DatabaseSync) {
    this.#add = db.prepare(`
      INSERT INTO releases (id, service, name, source_path, dir, created_at)
      VALUES (?, ?, ?, ?, ?, ?)`);
    this.#get = db.prepare('SELECT * FROM releases WHERE id = ?');
    // rowid breaks ties between releases created in the same millisecond.
    this.#list = db.prepare('SELECT * FROM releases WHERE service = ? ORDER BY created_at DESC, rowid DESC');
    this.#markDeployed = db.prepare('UPDATE releases SET last_deployed_at = ? WHERE id = ?');
    this.#delete = db.prepare('DELETE FROM releases WHERE id = ?');
  }

  add(r: NewRelease): void {
    this.#add.run(r.id, r.service, r.name, r.sourcePath, r.dir, r.createdAt);
  }

  get(id: string): ReleaseRow | null {
    const row = this.#get.get(id);
    return row ? toRelease(row) : null;
  }

  list(service: string): ReleaseRow[] {
    return this.#list.all(service).map(toRelease);
  }

  markDeployed(id: string, at: number): void {
    const r = this.#markDeployed.run(at, id);
    if (Number(r.changes) === 0) throw new BatonError('RELEASE_UNKNOWN', `no release with id ${id}`);
  }

  delete(id: string): void {
    this.#delete.run(id);
  }
}

function toRelease(row: Row): ReleaseRow {
  return {
    id: str(row, 'id'),
    service: str(row, 'service'),
    name: str(row, 'name'),
    sourcePath: str(row, 'source_path'),
    dir: str(row, 'dir'),
    createdAt: num(row, 'created_at'),
    lastDeployedAt: numOrNull(row, 'last_deployed_at'),
  };
}
