// The store's schema as numbered migrations, applied in order and recorded in
// schema_migrations so opening a database twice (or an old one) is safe.

import type { DatabaseSync } from 'node:sqlite';
import { BatonError } from '../core/errors.ts';
import { num } from './row.ts';
import { transaction } from './transaction.ts';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

// Append only: a released migration is never edited, a change is a new one.
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      CREATE TABLE services (
        name            TEXT PRIMARY KEY,
        current_release TEXT,
        standby_release TEXT,
        -- Operator modes that must survive a restart: maintenance page (JSON) and pause.
        maintenance     TEXT,
        paused          INTEGER NOT NULL DEFAULT 0,
        updated_at      INTEGER NOT NULL
      );
      -- A release id is unique within its service (a git release is named by its commit).
      CREATE TABLE releases (
        service          TEXT NOT NULL,
        id               TEXT NOT NULL,
        name             TEXT NOT NULL,
        kind             TEXT NOT NULL DEFAULT 'dir',
        source_path      TEXT NOT NULL,
        dir              TEXT NOT NULL,
        git_commit       TEXT,
        git_ref          TEXT,
        author           TEXT,
        message          TEXT,
        build_status     TEXT NOT NULL DEFAULT 'none',
        build_ms         INTEGER,
        built_at         INTEGER,
        created_at       INTEGER NOT NULL,
        last_deployed_at INTEGER,
        PRIMARY KEY (service, id)
      );
      CREATE INDEX releases_by_service ON releases (service, created_at);
      -- No foreign keys to releases: deployment history outlives pruned releases.
      -- AUTOINCREMENT so a deployment id is never reused.
      CREATE TABLE deployments (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        service      TEXT NOT NULL,
        kind         TEXT NOT NULL,
        from_release TEXT,
        to_release   TEXT NOT NULL,
        actor        TEXT NOT NULL,
        state        TEXT NOT NULL,
        started_at   INTEGER NOT NULL,
        finished_at  INTEGER,
        error        TEXT,
        requests     INTEGER NOT NULL DEFAULT 0,
        failed       INTEGER NOT NULL DEFAULT 0
      );
      CREATE INDEX deployments_by_service ON deployments (service, id);
      CREATE INDEX deployments_by_state ON deployments (state);
      CREATE TABLE deployment_events (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
        step          TEXT NOT NULL,
        message       TEXT NOT NULL,
        at            INTEGER NOT NULL,
        duration_ms   INTEGER,
        level         TEXT NOT NULL DEFAULT 'info'
      );
      CREATE INDEX deployment_events_by_deployment ON deployment_events (deployment_id, id);
      CREATE TABLE instances (
        id          TEXT PRIMARY KEY,
        service     TEXT NOT NULL,
        release     TEXT NOT NULL,
        release_dir TEXT NOT NULL,
        pid         INTEGER NOT NULL,
        start_time  TEXT NOT NULL,
        port        INTEGER NOT NULL,
        log_file    TEXT NOT NULL,
        state       TEXT NOT NULL,
        created_at  INTEGER NOT NULL
      );
      CREATE INDEX instances_by_service ON instances (service);
    `,
  },
  {
    version: 2,
    name: 'used beta link tokens',
    sql: `
      -- A beta link works once, across daemon restarts; rows past expires_at are swept.
      CREATE TABLE beta_tokens_used (
        id         TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 3,
    name: 'deployment numbers per service',
    sql: `
      -- Users name a deployment within its service ("web#12"); the global id stays
      -- the key events refer to. Existing rows are numbered in their service's order.
      ALTER TABLE deployments ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
      UPDATE deployments SET seq = (
        SELECT COUNT(*) FROM deployments AS earlier
        WHERE earlier.service = deployments.service AND earlier.id <= deployments.id
      );
      CREATE UNIQUE INDEX deployments_by_service_seq ON deployments (service, seq);
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS.reduce((max, m) => Math.max(max, m.version), 0);

/** Brings the database up to SCHEMA_VERSION; returns the version it was at before. */
export function migrate(db: DatabaseSync, file: string, now: number): number {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at INTEGER NOT NULL
  )`);
  const row = db.prepare('SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations').get();
  const from = row ? num(row, 'v') : 0;
  if (from > SCHEMA_VERSION) {
    // A newer baton wrote this file; guessing at its schema could corrupt it.
    throw new BatonError(
      'STORE_UNAVAILABLE',
      `${file}: schema version ${from} is newer than this baton understands (${SCHEMA_VERSION}); upgrade baton or use another state_dir`,
    );
  }
  const applied = db.prepare('SELECT 1 FROM schema_migrations WHERE version = ?');
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  for (const m of MIGRATIONS) {
    if (m.version <= from) continue;
    transaction(db, () => {
      // Checked again under the write lock: another process may have just applied it.
      if (applied.get(m.version)) return;
      db.exec(m.sql);
      record.run(m.version, m.name, now);
    });
  }
  return from;
}
