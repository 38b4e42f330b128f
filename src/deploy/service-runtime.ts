// The live state of one service in the daemon, owned here and changed only
// through these methods: its release groups (current, canary, draining,
// standby, incoming) and their roles, the deployment holding the service, the
// operator's modes (maintenance, pause), and the rules that keep the routed
// groups at their size (replace what crashes or turns unhealthy).
//
// The switch lives here, in one call (switchTo): write the new routing to the
// store, then move the roles and swap the routing snapshot.

import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { ServiceConfig } from '../config/types.ts';
import { BatonError, errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { Proxy } from '../proxy/index.ts';
import type { UpstreamTarget } from '../proxy/types.ts';
import type { Store } from '../store/index.ts';
import { Instance, allocatePort, type ExitInfo, type InstanceListener, type InstanceRecord } from '../supervisor/index.ts';
import { ReleaseGroup, isKeptAtSize } from './release-group.ts';
import type { CanaryRun } from './canary.ts';

export interface RuntimeHost {
  readonly store: Store;
  readonly proxy: Proxy;
  readonly logger: Logger;
  readonly stateDir: string;
  /** Build a routing snapshot from every service's runtime and swap it in. */
  publish(): void;
}

/** How the drain of a group that left the snapshot ended. */
export interface DrainReport {
  abandonedRequests: number;
  closedWebSockets: number;
  /** The deployment that routed to the group again before the drain ended (a rollback), if any. */
  takenOverBy: number | null;
  /** What became of the group: kept as the warm standby, stopped, serving again, or held by a deployment that claimed it. */
  after: 'standby' | 'stopped' | 'serving' | 'held';
}

/** What `baton abort` stopped: the deployment (its number within the service) and how. */
export interface AbortResult {
  seq: number;
  what: 'canary' | 'deploy';
}

/** A group draining after a switch: for `baton status`, and so a rollback can call it off. */
export interface DrainingInfo {
  release: string;
  deploymentId: number;
  instances: number;
  /** When the drain deadline passes (epoch ms). */
  deadline: number;
}

/** A group's drain in progress; `done` settles with its report (see ServiceRuntime.#drain). */
export interface Drain {
  readonly group: ReleaseGroup;
  readonly deploymentId: number;
  readonly deadline: number;
  readonly done: Promise<DrainReport>;
}

/** What the runtime keeps of a drain: the way to call it off, and who did. */
interface DrainControl extends Drain {
  readonly stop: AbortController;
  takenOverBy: number | null;
}

/** The deployment holding the service, until it switched traffic or ended. */
interface Active {
  readonly id: number;
  readonly cancel: AbortController;
  readonly ended: Promise<void>;
  readonly end: () => void;
}

export class ServiceRuntime implements InstanceListener {
  #config: ServiceConfig;
  #current: ReleaseGroup | null = null;
  #standby: ReleaseGroup | null = null;
  #standbyUntil: number | null = null;
  #standbyTimer: NodeJS.Timeout | null = null;
  /** Every group alive, whatever its role. */
  readonly #groups = new Set<ReleaseGroup>();
  #active: Active | null = null;
  /** Held while a deployment's release is being resolved, before it has an id. */
  #reservation: symbol | null = null;
  #canary: CanaryRun | null = null;
  readonly #drains = new Map<ReleaseGroup, DrainControl>();
  /** Warm groups a deployment is about to route to again: not stopped meanwhile. */
  readonly #claims = new Map<ReleaseGroup, number>();
  #maintenanceHtml: string | null = null;
  #paused = false;
  readonly #host: RuntimeHost;
  readonly #log: Logger;
  /** Instances we are stopping on purpose: their exit is not a crash. */
  readonly #stopping = new Set<string>();
  #closed = false;

  constructor(config: ServiceConfig, host: RuntimeHost) {
    this.#config = config;
    this.#host = host;
    this.#log = host.logger.child({ service: config.name });
  }

  // ---- reading -------------------------------------------------------------

  get name(): string {
    return this.#config.name;
  }

  get config(): ServiceConfig {
    return this.#config;
  }

  get current(): ReleaseGroup | null {
    return this.#current;
  }

  get standby(): ReleaseGroup | null {
    return this.#standby;
  }

  /** Until when the warm standby keeps running (null: no warm standby). */
  get standbyUntil(): number | null {
    return this.#standby ? this.#standbyUntil : null;
  }

  get groups(): ReadonlySet<ReleaseGroup> {
    return this.#groups;
  }

  get canary(): CanaryRun | null {
    return this.#canary;
  }

  /** The deployment holding the service (before its switch), if any. */
  get activeDeployment(): number | null {
    return this.#active?.id ?? null;
  }

  get maintenanceHtml(): string | null {
    return this.#maintenanceHtml;
  }

  get paused(): boolean {
    return this.#paused;
  }

  draining(): DrainingInfo[] {
    return [...this.#drains.values()].map((d) => ({ release: d.group.release, deploymentId: d.deploymentId, instances: d.group.instances.size, deadline: d.deadline }));
  }

  /** The canary's healthy instances, while a canary rollout routes traffic to them. */
  canaryTargets(): UpstreamTarget[] {
    const g = this.#canary?.group;
    if (!g || g.role !== 'canary') return [];
    return g.healthy().map((i) => ({ id: i.id, release: i.release, host: '127.0.0.1', port: i.port }));
  }

  /** The instances that get traffic: the healthy members of the current group. */
  targets(): UpstreamTarget[] {
    if (!this.#current || this.#current.role !== 'current') return [];
    return this.#current.healthy().map((i) => ({ id: i.id, release: i.release, host: '127.0.0.1', port: i.port }));
  }

  /** A running group of this release that is not routed (draining or warm standby) and not claimed: a switch to it needs no new instance. */
  warmGroup(release: string): ReleaseGroup | null {
    for (const g of this.#groups) {
      if (g.release === release && (g.role === 'draining' || g.role === 'standby') && g.instances.size > 0 && !this.#claims.has(g)) return g;
    }
    return null;
  }

  // ---- settings and operator modes ----------------------------------------

  /**
   * A reloaded service config: applies to what is started from now on, and to
   * the settings running instances hold (health checks, stop signal and timeout).
   */
  setConfig(config: ServiceConfig): void {
    this.#config = config;
    for (const g of this.#groups) for (const i of g.list()) i.applySettings(config);
  }

  /** Maintenance and pause as recorded in the store, at start-up (before the first snapshot). */
  restoreModes(maintenanceHtml: string | null, paused: boolean): void {
    this.#maintenanceHtml = maintenanceHtml;
    this.#paused = paused;
  }

  /** Maintenance page on (its HTML) or off (null): recorded, then routed. */
  setMaintenance(html: string | null, message: string): void {
    this.#host.store.setServiceMaintenance(this.name, html === null ? null : { message, since: Date.now() });
    this.#maintenanceHtml = html;
    this.#host.publish();
  }

  setPaused(paused: boolean): void {
    this.#host.store.setServicePaused(this.name, paused);
    this.#paused = paused;
    this.#host.publish();
  }

  // ---- the deployment holding the service -----------------------------------

  /** Refuse early (before any work) when a deployment holds the service. */
  assertIdle(): void {
    if (this.#active !== null || this.#reservation !== null) {
      throw new BatonError(
        'DEPLOY_IN_PROGRESS',
        `a deployment of ${this.name} is already running${this.#active !== null ? ` (#${this.#active.id})` : ''}; wait for it to finish, watch it with \`baton status ${this.name}\`, or cancel it with \`baton abort ${this.name}\``,
      );
    }
  }

  /**
   * Hold the service while a deployment's release is resolved (a git fetch).
   * begin() takes the reservation over; the returned function drops it if the
   * deployment never began (and never touches a later reservation).
   */
  reserve(): () => void {
    this.assertIdle();
    const mine = Symbol('reservation');
    this.#reservation = mine;
    return () => {
      if (this.#reservation === mine) this.#reservation = null;
    };
  }

  /**
   * A deployment takes the service (the caller may hold its reservation). Returns the signal of a cancel.
   * Here a deployment is named by its number within the service (web#12), as users name it.
   */
  begin(id: number): AbortSignal {
    if (this.#active !== null) this.assertIdle();
    this.#reservation = null;
    let end!: () => void;
    const ended = new Promise<void>((r) => (end = r));
    this.#active = { id, cancel: new AbortController(), ended, end };
    return this.#active.cancel.signal;
  }

  /** The deployment switched traffic or ended: the service is free for the next one (draining goes on). */
  release(id: number): void {
    const a = this.#active;
    if (a === null || a.id !== id) return;
    this.#active = null;
    a.end();
  }

  /**
   * The operator's abort (or a CLI's Ctrl-C): a canary goes back to the stable
   * release; a deployment that has not switched is cancelled. Resolves once
   * that is live. After the switch there is nothing to abort: roll back.
   */
  async abort(reason: string): Promise<AbortResult> {
    const a = this.#active;
    if (a === null) {
      const d = [...this.#drains.values()].at(-1);
      if (d) {
        throw new BatonError('NOTHING_RUNNING', `deployment #${d.deploymentId} of ${this.name} already switched traffic to ${this.#current?.release ?? '?'} (the old instances are draining); roll back with \`baton rollback ${this.name}\``);
      }
      throw new BatonError('NOTHING_RUNNING', `no deployment of ${this.name} is running: nothing to abort`);
    }
    const run = this.#canary;
    if (run) {
      const live = run.send('abort', reason);
      await Promise.race([live, a.ended]);
      return { seq: a.id, what: 'canary' };
    }
    a.cancel.abort(new BatonError('DEPLOY_CANCELLED', `deployment #${a.id} of ${this.name} cancelled: ${reason}`));
    await a.ended;
    return { seq: a.id, what: 'deploy' };
  }

  // ---- groups and roles ------------------------------------------------------

  newGroup(release: string, dir: string): ReleaseGroup {
    const g = new ReleaseGroup(release, dir, 'incoming');
    this.#groups.add(g);
    return g;
  }

  /** A warm group a deployment will route to: neither stopped nor made standby meanwhile. */
  claim(group: ReleaseGroup, deploymentId: number): void {
    this.#claims.set(group, deploymentId);
  }

  /** The claiming deployment failed before routing to the group: it ends as its drain would have. */
  unclaim(group: ReleaseGroup): void {
    if (!this.#claims.delete(group)) return;
    if (group.role === 'draining' && !this.#drains.has(group)) {
      void this.#settle(group, false).catch((err) => this.#log.error('stopping a drained group failed', { release: group.release, error: errorMessage(err) }));
    }
  }

  /** Start routing a share of the visitors to an incoming group. */
  startCanary(run: CanaryRun): void {
    run.group.moveTo('canary');
    this.#canary = run;
    this.#host.publish();
  }

  /** The canary's share changed: route it. */
  canaryWeightChanged(): void {
    this.#host.publish();
  }

  /** A canary rolled back: all its visitors back on the current group at once; then it drains and stops. */
  endCanary(): ReleaseGroup | null {
    const run = this.#canary;
    if (!run) return null;
    this.#canary = null;
    run.group.moveTo('retiring');
    this.#host.publish();
    return run.group;
  }

  /**
   * THE switch: write the new routing to the store (a daemon that crashes after
   * this line routes to `group`), then move the roles and swap the routing
   * snapshot in the same tick. The group that was current leaves the snapshot
   * and drains; a draining group switched to again (a rollback) stops draining.
   * Returns the drain of the group that was current, if any.
   */
  switchTo(group: ReleaseGroup, deploymentId: number, opts: { stopPrevious: boolean }): Drain | null {
    if (group.instances.size === 0) throw new BatonError('DEPLOY_FAILED', `no instance of ${group.release} is running`);
    const old = this.#current === group ? null : this.#current;
    const { store } = this.#host;
    const recorded = store.getService(this.name);
    const previous = old ? old.release : (recorded?.standbyRelease ?? null);
    store.transaction(() => {
      store.setServiceReleases(this.name, group.release, previous === group.release ? null : previous);
      store.markReleaseDeployed(this.name, group.release, Date.now());
    });

    const drain = this.#drains.get(group);
    if (drain) {
      drain.takenOverBy = deploymentId;
      drain.stop.abort();
      this.#drains.delete(group);
    }
    if (this.#standby === group) this.#clearStandby();
    this.#claims.delete(group);
    if (this.#canary?.group === group) this.#canary = null;
    group.moveTo('current');
    this.#current = group;
    if (old) old.moveTo('draining');
    this.#host.publish();

    // A warm group may have lost instances while unrouted: bring it back to size.
    if (group.instances.size < this.#config.instances) {
      void this.scale(group).catch((err) => this.#log.error('scaling failed', { release: group.release, error: errorMessage(err) }));
    }
    return old ? this.#drain(old, deploymentId, opts.stopPrevious) : null;
  }

  /**
   * Drain a group that left the snapshot: in-flight requests finish, WebSockets
   * get until the deadline. Then it becomes the warm standby (if it is still the
   * rollback target) or is stopped — unless a rollback routed to it meanwhile.
   */
  #drain(group: ReleaseGroup, deploymentId: number, stopAfter: boolean): Drain {
    const deadlineMs = this.#config.drainTimeoutMs;
    const report = Promise.withResolvers<DrainReport>();
    const d: DrainControl = { group, deploymentId, deadline: Date.now() + deadlineMs, done: report.promise, stop: new AbortController(), takenOverBy: null };
    this.#drains.set(group, d);
    this.#finishDrain(d, deadlineMs, stopAfter).then(report.resolve, report.reject);
    return d;
  }

  async #finishDrain(d: DrainControl, deadlineMs: number, stopAfter: boolean): Promise<DrainReport> {
    const { group } = d;
    const results = await Promise.all(group.list().map((i) => this.#host.proxy.drain(i.id, deadlineMs, d.stop.signal)));
    const figures = {
      abandonedRequests: results.reduce((n, r) => n + r.abandonedRequests, 0),
      closedWebSockets: results.reduce((n, r) => n + r.closedWebSockets, 0),
    };
    if (d.takenOverBy !== null) return { ...figures, takenOverBy: d.takenOverBy, after: 'serving' };
    this.#drains.delete(group);
    if (this.#closed) return { ...figures, takenOverBy: null, after: 'stopped' }; // shutdown() stops it
    if (this.#claims.has(group)) return { ...figures, takenOverBy: null, after: 'held' };
    return { ...figures, takenOverBy: null, after: await this.#settle(group, stopAfter) };
  }

  /** A drained group: the warm standby if it is still the rollback target, else stopped. */
  async #settle(group: ReleaseGroup, stopAfter: boolean): Promise<'standby' | 'stopped'> {
    const target = this.#host.store.getService(this.name)?.standbyRelease ?? null;
    if (!stopAfter && !this.#closed && this.#config.standbyMs > 0 && target === group.release && group.release !== this.#current?.release) {
      this.keepAsStandby(group, this.#config.standbyMs);
      return 'standby';
    }
    await this.stopGroup(group);
    return 'stopped';
  }

  /**
   * Take a group out of service for good (a failed deployment's new
   * instances, a rolled-back canary): drain it if it was routed, then stop it.
   */
  async retire(group: ReleaseGroup, drain: boolean): Promise<void> {
    this.#claims.delete(group);
    if (group.role !== 'retiring') group.moveTo('retiring');
    if (drain) await Promise.all(group.list().map((i) => this.#host.proxy.drain(i.id, this.#config.drainTimeoutMs))).catch(() => undefined);
    await this.stopGroup(group);
  }

  /** Stops of standbys that a newer one replaced, still running. */
  readonly #replacedStandbys = new Set<Promise<void>>();

  /** Keep a drained group running unrouted until `standbyMs` from now, then stop it. */
  keepAsStandby(group: ReleaseGroup, standbyMs: number): void {
    const old = this.#standby;
    if (old && old !== group) {
      this.#clearStandby();
      if (!this.#claims.has(old)) {
        const stopping: Promise<void> = this.stopGroup(old)
          .catch((err: unknown) => this.#log.error('stopping old standby failed', { error: errorMessage(err) }))
          .finally(() => this.#replacedStandbys.delete(stopping));
        this.#replacedStandbys.add(stopping);
      }
    }
    if (group.role !== 'standby') group.moveTo('standby');
    this.#clearStandby();
    this.#standby = group;
    const until = Date.now() + standbyMs;
    this.#standbyUntil = until;
    const expire = (): void => {
      if (this.#standby !== group || this.#claims.has(group)) return;
      // A timer can fire a millisecond before the wall-clock time status shows ("warm until"): never stop before it.
      const left = until - Date.now();
      if (left > 0) {
        this.#standbyTimer = setTimeout(expire, left);
        this.#standbyTimer.unref();
        return;
      }
      // The release stays the rollback target (store's standby); only its processes stop.
      this.#log.info('standby period over, stopping previous release', { release: group.release });
      void this.stopGroup(group).catch((err) => this.#log.error('stopping standby failed', { error: errorMessage(err) }));
    };
    this.#standbyTimer = setTimeout(expire, standbyMs);
    this.#standbyTimer.unref();
  }

  /** Resolves once every standby replaced so far has stopped (its release is then prunable). */
  async replacedStandbysStopped(): Promise<void> {
    await Promise.all([...this.#replacedStandbys]);
  }

  #clearStandby(): void {
    if (this.#standbyTimer) clearTimeout(this.#standbyTimer);
    this.#standbyTimer = null;
    this.#standbyUntil = null;
    this.#standby = null;
  }

  /** After a daemon restart: the groups found running, as the store names them (re-adopted instances join them). */
  adoptGroup(release: string, dir: string, role: 'current' | 'standby'): ReleaseGroup {
    const existing = role === 'current' ? this.#current : this.#standby;
    if (existing && existing.release === release) return existing;
    const g = new ReleaseGroup(release, dir, role);
    this.#groups.add(g);
    if (role === 'current') this.#current = g;
    else this.keepAsStandby(g, this.#config.standbyMs);
    return g;
  }

  /** Spawn one instance into the group and record it before it can receive traffic. */
  async spawn(group: ReleaseGroup): Promise<Instance> {
    const id = `${this.name}-${randomBytes(4).toString('hex')}`;
    const port = await allocatePort();
    const logDir = path.join(this.#host.stateDir, 'logs', this.name);
    await mkdir(logDir, { recursive: true });
    const logFile = path.join(logDir, `${id}.log`);
    const inst = await Instance.spawn(
      { id, service: this.#config, release: group.release, releaseDir: group.dir, port, logFile },
      this,
    );
    group.instances.set(inst.id, inst);
    this.#record(inst, 'starting');
    this.#log.info('instance started', { instance: inst.id, release: group.release, pid: inst.pid, port });
    return inst;
  }

  /** Start `count` instances of a release at once; if any spawn fails, stop the others. */
  async startGroup(group: ReleaseGroup, count: number): Promise<Instance[]> {
    const results = await Promise.allSettled(Array.from({ length: count }, () => this.spawn(group)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await this.stopGroup(group);
      throw failed.reason;
    }
    return results.map((r) => (r as PromiseFulfilledResult<Instance>).value);
  }

  /** Re-adopt an instance found in the store after a daemon restart. Returns null if the process is gone. */
  adopt(group: ReleaseGroup, record: InstanceRecord): Instance | null {
    const inst = Instance.adopt(record, this.#config, this);
    if (!inst) return null;
    group.instances.set(inst.id, inst);
    this.#log.info('instance re-adopted', { instance: inst.id, release: inst.release, pid: inst.pid, port: inst.port });
    return inst;
  }

  /** Stop one instance on purpose (it must already be out of the routing snapshot and drained). */
  async stopInstance(inst: Instance, group: ReleaseGroup | null = this.groupOf(inst)): Promise<void> {
    this.#stopping.add(inst.id);
    this.#host.store.setInstanceState(inst.id, 'stopping');
    try {
      const r = await inst.stop();
      this.#log.info('instance stopped', { instance: inst.id, forced: r.forced, ms: r.durationMs });
    } finally {
      group?.instances.delete(inst.id);
      this.#stopping.delete(inst.id);
      this.#host.store.deleteInstance(inst.id);
      await this.#host.proxy.forget(inst.id).catch(() => {});
    }
  }

  /** Stop every instance of a group (not routed) and forget the group. */
  async stopGroup(group: ReleaseGroup): Promise<void> {
    if (group.role !== 'retiring') group.moveTo('retiring');
    if (this.#standby === group) this.#clearStandby();
    this.#claims.delete(group);
    await Promise.all(group.list().map((i) => this.stopInstance(i, group)));
    this.#groups.delete(group);
    if (this.#current === group) this.#current = null;
  }

  groupOf(inst: Instance): ReleaseGroup | null {
    for (const g of this.#groups) if (g.instances.get(inst.id) === inst) return g;
    return null;
  }

  // ---- InstanceListener -------------------------------------------------

  instanceHealthChanged(inst: Instance, healthy: boolean): void {
    if (this.#stopping.has(inst.id) || this.#closed) return;
    const group = this.groupOf(inst);
    this.#host.store.setInstanceState(inst.id, healthy ? 'healthy' : 'unhealthy');
    if (!group) return;
    if (healthy) {
      this.#log.info('instance healthy', { instance: inst.id, release: inst.release });
    } else {
      this.#log.warn('instance unhealthy', { instance: inst.id, release: inst.release, error: inst.lastHealthError });
    }
    if (group.role === 'current' || group.role === 'canary') this.#host.publish();
    if (!healthy && isKeptAtSize(group.role)) {
      // Taken out of rotation above; replace it, and stop it once drained.
      group.instances.delete(inst.id);
      this.#scheduleReplacement(group, 'unhealthy');
      void this.#host.proxy
        .drain(inst.id, this.#config.drainTimeoutMs)
        .then(() => this.stopInstance(inst, null))
        .catch((err) => this.#log.error('stopping unhealthy instance failed', { instance: inst.id, error: errorMessage(err) }));
    }
  }

  instanceExited(inst: Instance, exit: ExitInfo): void {
    if (this.#stopping.has(inst.id) || this.#closed) return;
    const group = this.groupOf(inst);
    this.#log.warn('instance exited unexpectedly', {
      instance: inst.id,
      release: inst.release,
      pid: inst.pid,
      code: exit.code,
      signal: exit.signal,
    });
    this.#host.store.deleteInstance(inst.id);
    void this.#host.proxy.forget(inst.id).catch(() => {});
    if (!group) return;
    group.instances.delete(inst.id);
    if (group.role === 'current' || group.role === 'canary') this.#host.publish();
    if (isKeptAtSize(group.role)) this.#scheduleReplacement(group, 'exited');
  }

  // ---- keeping the size --------------------------------------------------

  /** Bring a current/standby group to the configured size (after a reload or an adoption). */
  async scale(group: ReleaseGroup): Promise<void> {
    const want = this.#config.instances;
    const have = group.instances.size + group.pendingReplacements;
    if (have < want) {
      await Promise.all(Array.from({ length: want - have }, () => this.spawn(group).catch((err) => {
        this.#log.error('starting instance failed', { error: errorMessage(err) });
      })));
    } else if (group.instances.size > want) {
      // Stop the oldest extras; they leave the routing snapshot first.
      const extras = group.list().sort((a, b) => a.startedAt - b.startedAt).slice(0, group.instances.size - want);
      for (const e of extras) group.instances.delete(e.id);
      if (group.role === 'current') this.#host.publish();
      await Promise.all(extras.map(async (e) => {
        await this.#host.proxy.drain(e.id, this.#config.drainTimeoutMs);
        await this.stopInstance(e, null);
      }));
    }
  }

  #scheduleReplacement(group: ReleaseGroup, why: string): void {
    const delay = group.backoff.next();
    group.pendingReplacements++;
    this.#log.info('replacing instance', { release: group.release, why, inMs: delay });
    const t = setTimeout(() => {
      group.pendingReplacements--;
      if (this.#closed || !this.#groups.has(group) || !isKeptAtSize(group.role)) return;
      if (group.instances.size >= this.#config.instances) return;
      this.spawn(group).catch((err) => {
        this.#log.error('replacement failed to start', { release: group.release, error: errorMessage(err) });
        this.#scheduleReplacement(group, 'spawn failed');
      });
    }, delay);
    t.unref();
  }

  #record(inst: Instance, state: string): void {
    this.#host.store.upsertInstance({ ...inst.toRecord(), state, createdAt: inst.startedAt });
  }

  /** The daemon is exiting and leaves instances running for its successor. */
  detach(): void {
    this.#closed = true;
    if (this.#standbyTimer) clearTimeout(this.#standbyTimer);
    for (const d of this.#drains.values()) d.stop.abort();
    for (const g of this.#groups) for (const i of g.list()) i.detach();
  }

  /** The service is going away (or the daemon stops for good): route nothing, drain and stop everything. */
  async shutdown(): Promise<void> {
    this.#closed = true;
    for (const d of this.#drains.values()) d.stop.abort();
    this.#drains.clear();
    const groups = [...this.#groups];
    this.#canary = null;
    this.#current = null;
    for (const g of groups) if (g.role !== 'retiring') g.moveTo('retiring');
    this.#host.publish();
    await Promise.all(groups.map((g) => this.retire(g, true)));
  }
}
