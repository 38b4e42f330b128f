// The releases table: one row per immutable release directory.

import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { BatonError } from '../core/errors.ts';
import { num, numOrNull, str, type Row } from './row.ts';
import type { BuildStatus, NewRelease, ReleaseKind, ReleaseRow } from './types.ts';

export class ReleaseTable {
  #add: StatementSync;
  #get: StatementSync;
  #list: StatementSync;
  #markDeployed: StatementSync;
  #delete: StatementSync;
  #setBuild: StatementSync;

  constructor(db: DatabaseSync) {
    this.#add = db.prepare(`
      INSERT INTO releases (id, service, name, kind, source_path, dir, git_commit, git_ref, author, message, created_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.#get = db.prepare('SELECT * FROM releases WHERE service = ? AND id = ?');
    // rowid breaks ties between releases created in the same millisecond.
    this.#list = db.prepare('SELECT * FROM releases WHERE service = ? ORDER BY created_at DESC, rowid DESC');
    this.#markDeployed = db.prepare('UPDATE releases SET last_deployed_at = ? WHERE service = ? AND id = ?');
    this.#delete = db.prepare('DELETE FROM releases WHERE service = ? AND id = ?');
    this.#setBuild = db.prepare('UPDATE releases SET build_status = ?, build_ms = ?, built_at = ? WHERE service = ? AND id = ?');
  }

  add(r: NewRelease): void {
    const g = r.git ?? null;
    this.#add.run(r.id, r.service, r.name, r.kind ?? 'dir', r.sourcePath, r.dir, g?.commit ?? null, g?.ref ?? null, g?.author ?? null, g?.message ?? null, r.createdAt);
  }

  get(service: string, id: string): ReleaseRow | null {
    const row = this.#get.get(service, id);
    return row ? toRelease(row) : null;
  }

  setBuild(service: string, id: string, status: BuildStatus, ms: number | null, at: number): void {
    const r = this.#setBuild.run(status, ms, at, service, id);
    if (Number(r.changes) === 0) throw new BatonError('RELEASE_UNKNOWN', `no release ${id} of ${service}`);
  }

  list(service: string): ReleaseRow[] {
    return this.#list.all(service).map(toRelease);
  }

  markDeployed(service: string, id: string, at: number): void {
    const r = this.#markDeployed.run(at, service, id);
    if (Number(r.changes) === 0) throw new BatonError('RELEASE_UNKNOWN', `no release ${id} of ${service}`);
  }

  delete(service: string, id: string): void {
    this.#delete.run(service, id);
  }
}

function toRelease(row: Row): ReleaseRow {
  return {
    id: str(row, 'id'),
    service: str(row, 'service'),
    name: str(row, 'name'),
    sourcePath: str(row, 'source_path'),
    kind: str(row, 'kind') as ReleaseKind,
    dir: str(row, 'dir'),
    git:
      row['git_commit'] === null || row['git_commit'] === undefined
        ? null
        : { commit: str(row, 'git_commit'), ref: String(row['git_ref'] ?? ''), author: String(row['author'] ?? ''), message: String(row['message'] ?? '') },
    buildStatus: str(row, 'build_status') as BuildStatus,
    buildMs: numOrNull(row, 'build_ms'),
    builtAt: numOrNull(row, 'built_at'),
    createdAt: num(row, 'created_at'),
    lastDeployedAt: numOrNull(row, 'last_deployed_at'),
  };
}
