// The deployments table and its events: each deployment's state machine as
// persisted step by step, and the timed log of what happened in it.

import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { BatonError } from '../core/errors.ts';
import { num, numOrNull, str, strOrNull, type Row } from './row.ts';
import type {
  DeploymentEventRow,
  DeploymentKey,
  DeploymentKind,
  DeploymentPatch,
  DeploymentRow,
  DeploymentState,
  EventLevel,
  NewDeployment,
  NewDeploymentEvent,
} from './types.ts';
import { FINAL_DEPLOYMENT_STATES } from './types.ts';

const FINAL_LIST = FINAL_DEPLOYMENT_STATES.map((s) => `'${s}'`).join(', ');

export class DeploymentTable {
  #create: StatementSync;
  #update: StatementSync;
  #get: StatementSync;
  #getBySeq: StatementSync;
  #list: StatementSync;
  #active: StatementSync;
  #addEvent: StatementSync;
  #listEvents: StatementSync;

  constructor(db: DatabaseSync) {
    // The next number of the service is taken in the INSERT itself: one statement
    // is atomic, and the unique (service, seq) index makes a race loud, not silent.
    this.#create = db.prepare(`
      INSERT INTO deployments (service, seq, kind, from_release, to_release, actor, state, started_at)
      VALUES (:service, (SELECT COALESCE(MAX(seq), 0) + 1 FROM deployments WHERE service = :service),
              :kind, :from_release, :to_release, :actor, 'planned', :started_at)
      RETURNING id, seq`);
    // One statement for every patch shape: a set_* flag says whether the field
    // was given, so `finishedAt: null` clears while an absent field is kept.
    this.#update = db.prepare(`
      UPDATE deployments SET
        state       = CASE WHEN :set_state       THEN :state       ELSE state       END,
        finished_at = CASE WHEN :set_finished_at THEN :finished_at ELSE finished_at END,
        error       = CASE WHEN :set_error       THEN :error       ELSE error       END,
        requests    = CASE WHEN :set_requests    THEN :requests    ELSE requests    END,
        failed      = CASE WHEN :set_failed      THEN :failed      ELSE failed      END
      WHERE id = :id`);
    this.#get = db.prepare('SELECT * FROM deployments WHERE id = ?');
    this.#getBySeq = db.prepare('SELECT * FROM deployments WHERE service = ? AND seq = ?');
    this.#list = db.prepare('SELECT * FROM deployments WHERE service = ? ORDER BY id DESC LIMIT ?');
    this.#active = db.prepare(`SELECT * FROM deployments WHERE state NOT IN (${FINAL_LIST}) ORDER BY id`);
    this.#addEvent = db.prepare(`
      INSERT INTO deployment_events (deployment_id, step, message, at, duration_ms, level)
      VALUES (?, ?, ?, ?, ?, ?)`);
    this.#listEvents = db.prepare('SELECT * FROM deployment_events WHERE deployment_id = ? ORDER BY id');
  }

  create(d: NewDeployment, now: number): DeploymentKey {
    const row = this.#create.get({
      service: d.service,
      kind: d.kind,
      from_release: d.fromRelease,
      to_release: d.toRelease,
      actor: d.actor,
      started_at: now,
    });
    if (!row) throw new BatonError('INTERNAL', `store: inserting a deployment of ${d.service} returned no row`);
    return { id: num(row, 'id'), seq: num(row, 'seq') };
  }

  update(id: number, patch: DeploymentPatch): void {
    const r = this.#update.run({
      id,
      set_state: flag(patch.state),
      state: patch.state ?? null,
      set_finished_at: flag(patch.finishedAt),
      finished_at: patch.finishedAt ?? null,
      set_error: flag(patch.error),
      error: patch.error ?? null,
      set_requests: flag(patch.requests),
      requests: patch.requests ?? null,
      set_failed: flag(patch.failed),
      failed: patch.failed ?? null,
    });
    // The caller believes the state is persisted before it acts; make a wrong id loud.
    if (Number(r.changes) === 0) throw new BatonError('INTERNAL', `store: no deployment with id ${id}`);
  }

  get(id: number): DeploymentRow | null {
    const row = this.#get.get(id);
    return row ? toDeployment(row) : null;
  }

  getBySeq(service: string, seq: number): DeploymentRow | null {
    const row = this.#getBySeq.get(service, seq);
    return row ? toDeployment(row) : null;
  }

  list(service: string, limit: number): DeploymentRow[] {
    return this.#list.all(service, limit).map(toDeployment);
  }

  active(): DeploymentRow[] {
    return this.#active.all().map(toDeployment);
  }

  addEvent(e: NewDeploymentEvent): void {
    this.#addEvent.run(e.deploymentId, e.step, e.message, e.at, e.durationMs ?? null, e.level ?? 'info');
  }

  listEvents(deploymentId: number): DeploymentEventRow[] {
    return this.#listEvents.all(deploymentId).map(toEvent);
  }
}

function flag(v: unknown): number {
  return v === undefined ? 0 : 1;
}

function toDeployment(row: Row): DeploymentRow {
  return {
    id: num(row, 'id'),
    seq: num(row, 'seq'),
    service: str(row, 'service'),
    kind: str(row, 'kind') as DeploymentKind,
    fromRelease: strOrNull(row, 'from_release'),
    toRelease: str(row, 'to_release'),
    actor: str(row, 'actor'),
    state: str(row, 'state') as DeploymentState,
    startedAt: num(row, 'started_at'),
    finishedAt: numOrNull(row, 'finished_at'),
    error: strOrNull(row, 'error'),
    requests: num(row, 'requests'),
    failed: num(row, 'failed'),
  };
}

function toEvent(row: Row): DeploymentEventRow {
  return {
    id: num(row, 'id'),
    deploymentId: num(row, 'deployment_id'),
    step: str(row, 'step'),
    message: str(row, 'message'),
    at: num(row, 'at'),
    durationMs: numOrNull(row, 'duration_ms'),
    level: str(row, 'level') as EventLevel,
  };
}
