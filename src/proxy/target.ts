// One upstream target's live state: its connection pool, in-flight and WebSocket counts, idle waiters.

import { UpstreamPool } from './upstream/pool.ts';
import type { UpstreamConfig } from '../config/types.ts';
import type { TargetStats, UpstreamTarget } from './types.ts';
import type { Candidate } from './balancer.ts';
import type { ReleaseStats } from './metrics.ts';

/** What a target needs from an open WebSocket tunnel to it. */
export interface TunnelHandle {
  /** Close both sides with 1001 at frame boundaries; resolves when the tunnel is gone (at most ~graceMs). */
  goAway(graceMs: number): Promise<void>;
}

function createPool(host: string, port: number, up: UpstreamConfig): UpstreamPool {
  // Pooled connections close before the app would close them (keepalive_timeout,
  // and below the app's own "Keep-Alive: timeout=N"), so we rarely write into a
  // connection the app is closing (the retry rules cover the rest). No limit
  // between body chunks: long downloads, server-sent events and long polls are
  // legitimate; a client that leaves aborts the exchange.
  return new UpstreamPool(host, port, {
    keepAliveTimeoutMs: up.keepAliveTimeoutMs,
    connectTimeoutMs: up.connectTimeoutMs,
    responseTimeoutMs: up.responseTimeoutMs,
  });
}

export class TargetState implements Candidate {
  readonly id: string;
  readonly service: string;
  readonly release: string;
  readonly host: string;
  readonly port: number;
  pool: UpstreamPool;
  /** Metrics of this target's service+release (shared with the other targets of the release). */
  readonly metrics: ReleaseStats;
  /** Present in the current routing snapshot. */
  inService = false;
  /** Share of new requests against the other targets (from the last snapshot that named it). */
  weight = 1;
  /** Smooth weighted round robin's score (src/proxy/balancer.ts). */
  swrr = 0;
  inflight = 0;
  requests = 0;
  readonly tunnels = new Set<TunnelHandle>();
  #upstream: UpstreamConfig;
  #idleWaiters: (() => void)[] = [];

  constructor(target: UpstreamTarget, service: string, upstream: UpstreamConfig, stats: ReleaseStats) {
    this.id = target.id;
    this.metrics = stats;
    this.service = service;
    this.release = target.release;
    this.host = target.host;
    this.port = target.port;
    this.weight = target.weight ?? 1;
    this.#upstream = upstream;
    this.pool = createPool(target.host, target.port, upstream);
  }

  /** Same instance address as `t`? (Otherwise the id was reused for another instance.) */
  sameAddress(t: UpstreamTarget): boolean {
    return t.host === this.host && t.port === this.port;
  }

  /** Adopt new upstream settings: a fresh pool; the old one closes once its requests finish. */
  updateUpstream(up: UpstreamConfig): void {
    const cur = this.#upstream;
    if (
      cur.keepAliveTimeoutMs === up.keepAliveTimeoutMs &&
      cur.connectTimeoutMs === up.connectTimeoutMs &&
      cur.responseTimeoutMs === up.responseTimeoutMs
    ) {
      return;
    }
    const old = this.pool;
    this.#upstream = up;
    this.pool = createPool(this.host, this.port, up);
    void old.close();
  }

  get idle(): boolean {
    return this.inflight === 0 && this.tunnels.size === 0;
  }

  /** An HTTP attempt on this target ended. */
  requestDone(): void {
    this.inflight--;
    this.metrics.inflight--;
    if (this.inflight === 0 && this.#idleWaiters.length > 0 && this.tunnels.size === 0) this.#wake();
  }

  tunnelOpened(t: TunnelHandle): void {
    this.tunnels.add(t);
  }

  tunnelClosed(t: TunnelHandle): void {
    if (this.tunnels.delete(t) && this.idle && this.#idleWaiters.length > 0) this.#wake();
  }

  /** Resolves when nothing runs on this target (immediately if nothing does). */
  whenIdle(): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #wake(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }

  stats(): TargetStats {
    return {
      id: this.id,
      service: this.service,
      release: this.release,
      port: this.port,
      inService: this.inService,
      inflight: this.inflight,
      websockets: this.tunnels.size,
      requests: this.requests,
    };
  }

  /** Close the pool once its running requests finish. */
  async close(): Promise<void> {
    await this.pool.close();
  }

  /** Abort whatever still runs on the pool. */
  async destroy(): Promise<void> {
    await this.pool.destroy();
  }
}
