// The contract between the proxy and whoever decides where traffic goes (the
// daemon). The daemon describes the desired routing as a plain ProxySpec; the
// proxy turns it into an immutable routing snapshot and swaps one reference.

import type { BalancePolicy, UpstreamConfig } from '../config/types.ts';

/** One running instance that may receive traffic. `id` is stable for the instance's life. */
export interface UpstreamTarget {
  id: string; // instance id, e.g. "web-3f2a1c"
  release: string; // release id
  host: string; // always 127.0.0.1 for local instances
  port: number;
}

export interface ServiceRouteSpec {
  name: string;
  hosts: string[]; // lowercase host names without port
  isDefault: boolean;
  balance: BalancePolicy;
  upstream: UpstreamConfig;
  /** The instances in service. Empty = the service answers 503. */
  targets: UpstreamTarget[];
}

export interface ProxySpec {
  services: ServiceRouteSpec[];
}

/** Counters of one service, since the daemon started. Monotonic. */
export interface ServiceCounters {
  requests: number; // client requests that completed (response finished or failed)
  failed: number; // of those: answered by baton with 5xx, or cut before the response completed
  retries: number; // requests re-sent to another (or the same) instance under the retry rules
  websockets: number; // WebSocket upgrades accepted, total
}

/** Live state of one upstream target as the proxy sees it. */
export interface TargetStats {
  id: string;
  service: string;
  release: string;
  port: number;
  inService: boolean; // present in the current snapshot
  inflight: number; // HTTP requests currently being proxied to it
  websockets: number; // open WebSocket tunnels to it
  requests: number; // total requests sent to it
}

export interface DrainResult {
  /** Requests still running when the drain deadline passed (0 = all finished). */
  abandonedRequests: number;
  /** WebSockets closed by baton at the deadline (with close code 1001). */
  closedWebSockets: number;
  durationMs: number;
}
