// The live state of one service in the daemon: its release groups (current,
// standby, incoming), the instances in them, and the rules that keep the
// current group at its size (replace what crashes or turns unhealthy).

import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { ServiceConfig } from '../config/types.ts';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { Proxy } from '../proxy/index.ts';
import type { UpstreamTarget } from '../proxy/types.ts';
import type { Store } from '../store/index.ts';
import { Instance, allocatePort, type ExitInfo, type InstanceListener, type InstanceRecord } from '../supervisor/index.ts';
import { ReleaseGroup, type GroupRole } from './release-group.ts';
import type { CanaryRun } from './canary.ts';

export interface RuntimeHost {
  readonly store: Store;
  readonly proxy: Proxy;
  readonly logger: Logger;
  readonly stateDir: string;
  /** Something routed changed (health, membership, roles): rebuild the routing snapshot. */
  routingChanged(): void;
}

export class ServiceRuntime implements InstanceListener {
  config: ServiceConfig;
  current: ReleaseGroup | null = null;
  standby: ReleaseGroup | null = null;
  /** Every group alive, whatever its role. */
  readonly groups = new Set<ReleaseGroup>();
  /** The deployment holding this service, if any: one at a time per service. */
  activeDeployment: number | null = null;
  /** Held while a deployment's release is being resolved, before it has an id. */
  reserved = false;
  /** The canary rollout in progress, if any. */
  canary: CanaryRun | null = null;
  /** Maintenance mode: the page served instead of the app (null = off). */
  maintenanceHtml: string | null = null;
  /** Paused: requests are held until resumed. */
  paused = false;
  readonly #host: RuntimeHost;
  readonly #log: Logger;
  /** Instances we are stopping on purpose: their exit is not a crash. */
  readonly #stopping = new Set<string>();
  #closed = false;

  constructor(config: ServiceConfig, host: RuntimeHost) {
    this.config = config;
    this.#host = host;
    this.#log = host.logger.child({ service: config.name });
  }

  get name(): string {
    return this.config.name;
  }

  /** The canary's healthy instances, while a canary rollout routes traffic to them. */
  canaryTargets(): UpstreamTarget[] {
    const g = this.canary?.group;
    if (!g || g.role !== 'canary') return [];
    return g.healthy().map((i) => ({ id: i.id, release: i.release, host: '127.0.0.1', port: i.port }));
  }

  /** The instances that get traffic: the healthy members of the current group. */
  targets(): UpstreamTarget[] {
    if (!this.current || this.current.role !== 'current') return [];
    return this.current.healthy().map((i) => ({ id: i.id, release: i.release, host: '127.0.0.1', port: i.port }));
  }

  newGroup(release: string, dir: string, role: GroupRole): ReleaseGroup {
    const g = new ReleaseGroup(release, dir, role);
    this.groups.add(g);
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
      { id, service: this.config, release: group.release, releaseDir: group.dir, port, logFile },
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
    const inst = Instance.adopt(record, this.config, this);
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
    group.role = 'retiring';
    this.#clearStandbyTimer(group);
    await Promise.all(group.list().map((i) => this.stopInstance(i, group)));
    this.groups.delete(group);
    if (this.current === group) this.current = null;
    if (this.standby === group) this.standby = null;
  }

  /**
   * Drain a group that has just left the routing snapshot: in-flight requests
   * finish and WebSockets get until the drain deadline. Returns the figures.
   */
  async drainGroup(group: ReleaseGroup, deadlineMs: number): Promise<{ abandonedRequests: number; closedWebSockets: number }> {
    const results = await Promise.all(group.list().map((i) => this.#host.proxy.drain(i.id, deadlineMs)));
    return {
      abandonedRequests: results.reduce((n, r) => n + r.abandonedRequests, 0),
      closedWebSockets: results.reduce((n, r) => n + r.closedWebSockets, 0),
    };
  }

  /** Keep a drained group running unrouted until `standbyMs` from now, then stop it. */
  keepAsStandby(group: ReleaseGroup, standbyMs: number): void {
    if (this.standby && this.standby !== group) {
      const old = this.standby;
      void this.stopGroup(old).catch((err) => this.#log.error('stopping old standby failed', { error: errorMessage(err) }));
    }
    group.role = 'standby';
    this.standby = group;
    this.#clearStandbyTimer(group);
    group.standbyUntil = Date.now() + standbyMs;
    group.standbyTimer = setTimeout(() => {
      if (this.standby !== group) return;
      // The release stays the rollback target (store's standby); only its processes stop.
      this.#log.info('standby period over, stopping previous release', { release: group.release });
      void this.stopGroup(group).catch((err) => this.#log.error('stopping standby failed', { error: errorMessage(err) }));
    }, standbyMs);
    group.standbyTimer.unref();
  }

  groupOf(inst: Instance): ReleaseGroup | null {
    for (const g of this.groups) if (g.instances.get(inst.id) === inst) return g;
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
    if (group.role === 'current' || group.role === 'canary') this.#host.routingChanged();
    if (!healthy && (group.role === 'current' || group.role === 'canary' || group.role === 'standby')) {
      // Taken out of rotation above; replace it, and stop it once drained.
      group.instances.delete(inst.id);
      this.#scheduleReplacement(group, 'unhealthy');
      void this.#host.proxy
        .drain(inst.id, this.config.drainTimeoutMs)
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
    if (group.role === 'current' || group.role === 'canary') this.#host.routingChanged();
    if (group.role === 'current' || group.role === 'canary' || group.role === 'standby') this.#scheduleReplacement(group, 'exited');
  }

  // ---- keeping the size --------------------------------------------------

  /** Bring a current/standby group to the configured size (after a reload or an adoption). */
  async scale(group: ReleaseGroup): Promise<void> {
    const want = this.config.instances;
    const have = group.instances.size + group.pendingReplacements;
    if (have < want) {
      await Promise.all(Array.from({ length: want - have }, () => this.spawn(group).catch((err) => {
        this.#log.error('starting instance failed', { error: errorMessage(err) });
      })));
    } else if (group.instances.size > want) {
      // Stop the oldest extras; they leave the routing snapshot first.
      const extras = group.list().sort((a, b) => a.startedAt - b.startedAt).slice(0, group.instances.size - want);
      for (const e of extras) group.instances.delete(e.id);
      if (group.role === 'current') this.#host.routingChanged();
      await Promise.all(extras.map(async (e) => {
        await this.#host.proxy.drain(e.id, this.config.drainTimeoutMs);
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
      if (this.#closed || !this.groups.has(group) || (group.role !== 'current' && group.role !== 'canary' && group.role !== 'standby')) return;
      if (group.instances.size >= this.config.instances) return;
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

  #clearStandbyTimer(group: ReleaseGroup): void {
    if (group.standbyTimer) clearTimeout(group.standbyTimer);
    group.standbyTimer = null;
    group.standbyUntil = null;
  }

  /** The daemon is exiting and leaves instances running for its successor. */
  detach(): void {
    this.#closed = true;
    for (const g of this.groups) {
      this.#clearStandbyTimer(g);
      for (const i of g.list()) i.detach();
    }
  }

  /** The daemon is shutting down for good: drain and stop everything. */
  async shutdown(): Promise<void> {
    this.#closed = true;
    const groups = [...this.groups];
    for (const g of groups) g.role = 'retiring';
    this.#host.routingChanged();
    await Promise.all(groups.map(async (g) => {
      await this.drainGroup(g, this.config.drainTimeoutMs);
      await this.stopGroup(g);
    }));
  }
}
