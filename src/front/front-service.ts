// A front service: baton as the balancer in front of other hosts' baton
// listeners (HAProxy's backend of `server … check weight … agent-check`).
// Each target is checked on its own timer; what the checks decide (up, down,
// drained by its host, drained here by the operator, an agent's weight)
// becomes the service's entry in the routing spec, and the same proxy does
// the rest: the pools, the balancer (weights), the retry of what never
// reached a host, WebSockets, per-target figures (the target's name is its
// `release` in the proxy's metrics).

import type { FrontServiceConfig, RemoteTargetConfig } from '../config/types.ts';
import { BatonError, errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { FrontServiceStatus, FrontTargetStatus } from '../control/protocol.ts';
import { p99FromHistogram } from '../deploy/analysis.ts';
import type { ReleaseMetrics, ServiceCounters, ServiceRouteSpec, TargetStats, UpstreamTarget } from '../proxy/types.ts';
import { probeAgent, probeHttp, type AgentVerdict, type HttpVerdict } from './probe.ts';
import type { OperatorDrain, TargetModes } from './target-modes.ts';

/** What a front service needs from the daemon. */
export interface FrontHost {
  readonly logger: Logger;
  readonly modes: TargetModes;
  /** Rebuild the routing snapshot (a target went in or out of rotation). */
  publish(): void;
}

/** The proxy's figures a status is made of. */
export interface ProxyFigures {
  targets: TargetStats[];
  releases: ReleaseMetrics[];
  counters: ServiceCounters;
}

/** The checks' verdict on one target, by HAProxy's rise/fall rules. */
type Phase = 'checking' | 'up' | 'down';

class RemoteTarget {
  config: RemoteTargetConfig;
  phase: Phase = 'checking';
  #successes = 0;
  #failures = 0;
  /** The host's readiness URL answers 503 "draining". */
  hostDrained = false;
  /** The last agent-check line (kept when the agent cannot be reached, as HAProxy does). */
  agent: AgentVerdict | null = null;
  agentError: string | null = null;
  lastError: string | null = null;
  lastCheckAt: number | null = null;
  /** When the target last went in or out of rotation. */
  since = Date.now();
  timer: NodeJS.Timeout | null = null;

  constructor(config: RemoteTargetConfig) {
    this.config = config;
  }

  /**
   * Record one readiness check: before any verdict, the first check decides
   * (a daemon that starts routes at once to hosts that answer); then
   * `fall` failures in a row take an up target down and `rise` successes
   * bring a down one back. A drained host is alive: not a failure.
   */
  record(v: HttpVerdict, rise: number, fall: number): void {
    this.lastCheckAt = Date.now();
    if (v.kind === 'fail') {
      this.lastError = v.reason;
      this.#successes = 0;
      this.#failures++;
      if (this.phase === 'checking' || (this.phase === 'up' && this.#failures >= fall)) this.phase = 'down';
      return;
    }
    this.lastError = null;
    this.hostDrained = v.kind === 'drain';
    this.#failures = 0;
    this.#successes++;
    if (this.phase === 'checking' || (this.phase === 'down' && this.#successes >= rise)) this.phase = 'up';
  }

  /** The weight in use: the configured one scaled by the agent's "up NN%". */
  get effectiveWeight(): number {
    const pct = this.agent?.percent ?? 100;
    return (this.config.weight * pct) / 100;
  }

  /** Why the target gets no new request, or null when it does. */
  outOfRotation(operator: OperatorDrain | null): { state: FrontTargetStatus['state']; reason: string } | null {
    if (operator !== null) return { state: 'drain', reason: `drained here by the operator: ${operator.reason || 'no reason given'}` };
    if (this.phase === 'checking') return { state: 'checking', reason: 'no check answered yet' };
    if (this.phase === 'down') return { state: 'down', reason: this.lastError ?? 'failed its checks' };
    const agent = this.agent?.state ?? null;
    if (agent === 'down') return { state: 'down', reason: 'its agent says down' };
    if (agent === 'maint') return { state: 'maint', reason: 'its agent says maint' };
    if (agent === 'drain') return { state: 'drain', reason: 'its agent says drain' };
    if (this.hostDrained) return { state: 'drain', reason: 'the host is drained (its readiness URL answers 503 "draining")' };
    if (this.effectiveWeight <= 0) return { state: 'drain', reason: 'its agent says 0%' };
    return null;
  }
}

export class FrontService {
  config: FrontServiceConfig;
  readonly #host: FrontHost;
  readonly #targets = new Map<string, RemoteTarget>();
  #stopped = false;

  constructor(config: FrontServiceConfig, host: FrontHost) {
    this.config = config;
    this.#host = host;
    for (const t of config.targets) this.#targets.set(t.name, new RemoteTarget(t));
  }

  get name(): string {
    return this.config.name;
  }

  /** The proxy's id of a target: unique across services. */
  static targetId(service: string, target: string): string {
    return `${service}@${target}`;
  }

  /**
   * Check every target once (each bounded by the check timeout), then keep
   * checking on the interval. Awaited before the daemon routes, so a
   * daemon that starts (or replaces its predecessor) sends requests at once to
   * the hosts that answer, and never to one that does not.
   */
  async start(): Promise<void> {
    await Promise.all([...this.#targets.values()].map((t) => this.#checkLogged(t)));
    for (const t of this.#targets.values()) this.#schedule(t);
  }

  stop(): void {
    this.#stopped = true;
    for (const t of this.#targets.values()) this.#unschedule(t);
  }

  /**
   * A reload: new settings and targets. Returns the proxy ids of the targets
   * that went away (the daemon drains and forgets them once out of the snapshot).
   */
  setConfig(next: FrontServiceConfig): string[] {
    this.config = next;
    const removed: string[] = [];
    const names = new Set(next.targets.map((t) => t.name));
    for (const [name, t] of this.#targets) {
      if (names.has(name)) continue;
      this.#unschedule(t);
      this.#targets.delete(name);
      removed.push(FrontService.targetId(this.name, name));
    }
    for (const c of next.targets) {
      const known = this.#targets.get(c.name);
      if (known !== undefined && known.config.host === c.host && known.config.port === c.port) {
        known.config = c;
        continue;
      }
      // Another address under the same name is a new target, checked from scratch
      // (the proxy finishes what runs on the old address: the id now names another one).
      if (known !== undefined) this.#unschedule(known);
      const t = new RemoteTarget(c);
      this.#targets.set(c.name, t);
      if (!this.#stopped) void this.#checkLogged(t).then(() => this.#schedule(t));
    }
    return removed;
  }

  /** This service's entry in the routing spec: the targets in rotation, with their weights. */
  routeSpec(): ServiceRouteSpec {
    const c = this.config;
    const targets: UpstreamTarget[] = [];
    for (const t of this.#targets.values()) {
      if (t.outOfRotation(this.#host.modes.get(this.name, t.config.name)) !== null) continue;
      targets.push({ id: FrontService.targetId(this.name, t.config.name), release: t.config.name, host: t.config.host, port: t.config.port, weight: t.effectiveWeight });
    }
    return { name: c.name, hosts: c.hosts, isDefault: c.isDefault, balance: c.balance, upstream: c.upstream, targets, wsCloseSpreadMs: c.wsCloseSpreadMs, limits: c.limits };
  }

  /** The operator drains a target here (no new request; in-flight ones finish), or puts it back. */
  async setOperatorDrain(target: string, drain: boolean, reason: string): Promise<FrontTargetStatus['state']> {
    const t = this.#targets.get(target);
    if (t === undefined) {
      const known = [...this.#targets.keys()].join(', ');
      throw new BatonError('BAD_REQUEST', `service "${this.name}" has no target "${target}" (targets: ${known})`);
    }
    const before = this.#inRotation(t);
    await this.#host.modes.set(this.name, target, drain ? { mode: 'drain', since: Date.now(), reason } : null);
    this.#host.logger.info(drain ? 'front target drained by the operator' : 'front target undrained by the operator', { service: this.name, target, reason });
    this.#changed(t, before);
    return t.outOfRotation(this.#host.modes.get(this.name, target))?.state ?? 'up';
  }

  status(figures: ProxyFigures): FrontServiceStatus {
    const c = this.config;
    const byId = new Map(figures.targets.map((x) => [x.id, x]));
    const byRelease = new Map(figures.releases.map((r) => [r.release, r]));
    return {
      name: c.name,
      hosts: c.hosts,
      isDefault: c.isDefault,
      balance: c.balance,
      check: { path: c.health.path, intervalMs: c.health.intervalMs, timeoutMs: c.health.timeoutMs, healthyThreshold: c.health.healthyThreshold, unhealthyThreshold: c.health.unhealthyThreshold },
      counters: figures.counters,
      targets: [...this.#targets.values()].map((t) => {
        const operator = this.#host.modes.get(this.name, t.config.name);
        const out = t.outOfRotation(operator);
        const live = byId.get(FrontService.targetId(this.name, t.config.name));
        const m = byRelease.get(t.config.name);
        return {
          name: t.config.name,
          address: `${t.config.host}:${t.config.port}`,
          weight: t.config.weight,
          effectiveWeight: t.effectiveWeight,
          state: out?.state ?? 'up',
          inRotation: out === null,
          reason: out?.reason ?? null,
          agent: t.config.agent === null ? null : (t.agentError ?? (t.agent === null ? 'not asked yet' : [t.agent.state ?? '', t.agent.percent === null ? '' : `${t.agent.percent}%`].filter(Boolean).join(' '))),
          operator,
          since: t.since,
          lastCheckAt: t.lastCheckAt,
          inflight: live?.inflight ?? 0,
          websockets: live?.websockets ?? 0,
          // Sent since this daemon started (attempts, counted when sent): what "gets no new request" is judged by.
          requests: live?.requests ?? 0,
          status: m?.status ?? { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 },
          connectionErrors: m?.connectionErrors ?? 0,
          retries: m?.retries ?? 0,
          p99Ms: m ? p99FromHistogram(m.latency.bucketsMs, m.latency.counts) : null,
        };
      }),
    };
  }

  #inRotation(t: RemoteTarget): boolean {
    return t.outOfRotation(this.#host.modes.get(this.name, t.config.name)) === null;
  }

  /** Publish when the target went in or out of rotation, or its weight changed. */
  #changed(t: RemoteTarget, before: { inRotation: boolean; weight: number } | boolean): void {
    const was = typeof before === 'boolean' ? { inRotation: before, weight: t.effectiveWeight } : before;
    const now = this.#inRotation(t);
    if (now === was.inRotation && t.effectiveWeight === was.weight) return;
    if (now !== was.inRotation) {
      t.since = Date.now();
      const why = t.outOfRotation(this.#host.modes.get(this.name, t.config.name));
      const fields = { service: this.name, target: t.config.name, address: `${t.config.host}:${t.config.port}` };
      if (now) this.#host.logger.info('front target in rotation', fields);
      else this.#host.logger.warn('front target out of rotation', { ...fields, state: why?.state, reason: why?.reason });
    }
    this.#host.publish();
  }

  async #check(t: RemoteTarget): Promise<void> {
    const h = this.config.health;
    const hostHeader = this.config.hosts[0] ?? `${t.config.host.includes(':') ? `[${t.config.host}]` : t.config.host}:${t.config.port}`;
    const agent = t.config.agent;
    const [http, agentVerdict] = await Promise.all([
      probeHttp(t.config.host, t.config.port, h.path, hostHeader, h.timeoutMs),
      agent === null ? Promise.resolve(null) : probeAgent(agent.host, agent.port, h.timeoutMs),
    ]);
    // Removed (reload) or stopped meanwhile: its verdict no longer matters.
    if (this.#stopped || this.#targets.get(t.config.name) !== t) return;
    const before = { inRotation: this.#inRotation(t), weight: t.effectiveWeight };
    t.record(http, h.healthyThreshold, h.unhealthyThreshold);
    if (agentVerdict !== null) {
      if ('error' in agentVerdict) {
        t.agentError = agentVerdict.error;
      } else {
        t.agentError = null;
        t.agent = { state: agentVerdict.state ?? t.agent?.state ?? null, percent: agentVerdict.percent ?? t.agent?.percent ?? null };
      }
    }
    this.#changed(t, before);
  }

  /**
   * A check whose own failure (not the target's: probes answer verdicts, they
   * do not throw) is logged and leaves the target as it was: a rejection left
   * unhandled would take the daemon, and every service it proxies, down.
   */
  async #checkLogged(t: RemoteTarget): Promise<void> {
    try {
      await this.#check(t);
    } catch (err) {
      this.#host.logger.error('front target check failed; its state is unchanged', { service: this.name, target: t.config.name, error: errorMessage(err) });
    }
  }

  #schedule(t: RemoteTarget): void {
    if (this.#stopped || this.#targets.get(t.config.name) !== t) return;
    t.timer = setTimeout(() => {
      t.timer = null;
      void this.#checkLogged(t).then(() => this.#schedule(t));
    }, this.config.health.intervalMs);
    t.timer.unref();
  }

  #unschedule(t: RemoteTarget): void {
    if (t.timer !== null) clearTimeout(t.timer);
    t.timer = null;
  }
}
