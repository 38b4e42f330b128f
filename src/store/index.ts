// The store: baton's durable state in one SQLite file (WAL). Every method is a
// synchronous write that has committed by the time it returns, so the daemon
// can persist a decision before acting on it.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { BatonError, errorMessage } from '../core/errors.ts';
import { BetaTokenTable } from './beta-tokens.ts';
import { DeploymentTable } from './deployments.ts';
import { InstanceTable } from './instances.ts';
import { migrate } from './migrations.ts';
import { ReleaseTable } from './releases.ts';
import { ServiceTable } from './services.ts';
import { transaction } from './transaction.ts';
import type {
  DeploymentEventRow,
  DeploymentKey,
  DeploymentPatch,
  DeploymentRow,
  InstanceRow,
  NewDeployment,
  NewDeploymentEvent,
  BuildStatus,
  NewRelease,
  ReleaseRow,
  ServiceState,
} from './types.ts';

export type * from './types.ts';
export { FINAL_DEPLOYMENT_STATES } from './types.ts';
export { SCHEMA_VERSION } from './migrations.ts';

export interface StoreOptions {
  /** Clock for the times the store stamps itself (startedAt, updatedAt). */
  now?: () => number;
  /** How long a write waits for another connection's lock before failing. */
  busyTimeoutMs?: number;
}

const DEFAULT_BUSY_TIMEOUT_MS = 5000;

export class Store {
  readonly file: string;
  #db: DatabaseSync;
  #now: () => number;
  #services: ServiceTable;
  #releases: ReleaseTable;
  #deployments: DeploymentTable;
  #instances: InstanceTable;
  #betaTokens: BetaTokenTable;

  private constructor(file: string, db: DatabaseSync, now: () => number) {
    this.file = file;
    this.#db = db;
    this.#now = now;
    this.#services = new ServiceTable(db);
    this.#releases = new ReleaseTable(db);
    this.#deployments = new DeploymentTable(db);
    this.#instances = new InstanceTable(db);
    this.#betaTokens = new BetaTokenTable(db);
  }

  /** Opens (creating it and its directory if needed) and migrates the database at `file`. */
  static open(file: string, options: StoreOptions = {}): Store {
    const now = options.now ?? Date.now;
    let db: DatabaseSync;
    try {
      mkdirSync(dirname(file), { recursive: true });
      db = new DatabaseSync(file, {
        enableForeignKeyConstraints: true,
        timeout: options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS,
      });
    } catch (err) {
      throw new BatonError('STORE_UNAVAILABLE', `${file}: cannot open the state database: ${errorMessage(err)}`);
    }
    try {
      db.exec('PRAGMA journal_mode = WAL');
      // NORMAL in WAL mode: a commit survives a process crash; only an OS crash
      // or power loss can lose the last few commits, never corrupt the file.
      db.exec('PRAGMA synchronous = NORMAL');
      db.exec('PRAGMA foreign_keys = ON');
      migrate(db, file, now());
      return new Store(file, db, now);
    } catch (err) {
      db.close();
      if (err instanceof BatonError) throw err;
      throw new BatonError('STORE_UNAVAILABLE', `${file}: cannot use the state database: ${errorMessage(err)}`);
    }
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }

  /** Runs `fn` so that all the store writes inside it commit together or not at all. */
  transaction<T>(fn: () => T): T {
    return transaction(this.#db, fn);
  }

  // services

  getService(name: string): ServiceState | null {
    return this.#services.get(name);
  }

  setServiceReleases(name: string, currentRelease: string | null, standbyRelease: string | null): void {
    this.#services.setReleases(name, currentRelease, standbyRelease, this.#now());
  }

  /** Maintenance mode on (with the operator's message) or off (null). */
  setServiceMaintenance(name: string, maintenance: ServiceState['maintenance']): void {
    this.#services.setMaintenance(name, maintenance, this.#now());
  }

  setServicePaused(name: string, paused: boolean): void {
    this.#services.setPaused(name, paused, this.#now());
  }

  // releases

  addRelease(r: NewRelease): void {
    this.#releases.add(r);
  }

  getRelease(service: string, id: string): ReleaseRow | null {
    return this.#releases.get(service, id);
  }

  /** Record the outcome of a release's build hook (a built release is never built again). */
  setReleaseBuild(service: string, id: string, status: BuildStatus, ms: number | null, at: number): void {
    this.#releases.setBuild(service, id, status, ms, at);
  }

  /** Newest first. */
  listReleases(service: string): ReleaseRow[] {
    return this.#releases.list(service);
  }

  /** Throws RELEASE_UNKNOWN if there is no such release. */
  markReleaseDeployed(service: string, id: string, at: number): void {
    this.#releases.markDeployed(service, id, at);
  }

  deleteRelease(service: string, id: string): void {
    this.#releases.delete(service, id);
  }

  // deployments

  /** Records a new deployment in state 'planned', started now; returns its id and its number within the service. */
  createDeployment(d: NewDeployment): DeploymentKey {
    return this.#deployments.create(d, this.#now());
  }

  /** Changes only the fields present in `patch`; `null` clears a nullable field. */
  updateDeployment(id: number, patch: DeploymentPatch): void {
    this.#deployments.update(id, patch);
  }

  getDeployment(id: number): DeploymentRow | null {
    return this.#deployments.get(id);
  }

  /** A deployment by its number within its service (what users see: web#12). */
  getDeploymentBySeq(service: string, seq: number): DeploymentRow | null {
    return this.#deployments.getBySeq(service, seq);
  }

  /** Newest first. */
  listDeployments(service: string, limit: number): DeploymentRow[] {
    return this.#deployments.list(service, limit);
  }

  /** Deployments not yet done, failed or rolled back, oldest first. */
  activeDeployments(): DeploymentRow[] {
    return this.#deployments.active();
  }

  addDeploymentEvent(e: NewDeploymentEvent): void {
    this.#deployments.addEvent(e);
  }

  /** Oldest first. */
  listDeploymentEvents(deploymentId: number): DeploymentEventRow[] {
    return this.#deployments.listEvents(deploymentId);
  }

  // instances

  upsertInstance(i: InstanceRow): void {
    this.#instances.upsert(i);
  }

  setInstanceState(id: string, state: string): void {
    this.#instances.setState(id, state);
  }

  deleteInstance(id: string): void {
    this.#instances.delete(id);
  }

  /** Every instance, or one service's, oldest first. */
  listInstances(service?: string): InstanceRow[] {
    return this.#instances.list(service);
  }

  // beta links

  /** Mark beta link token `id` used (until it expires); true the first time, false if it was used before. */
  claimBetaToken(id: string, expiresAt: number): boolean {
    const first = this.#betaTokens.claim(id, expiresAt);
    if (first) this.#betaTokens.sweep(this.#now());
    return first;
  }
}
