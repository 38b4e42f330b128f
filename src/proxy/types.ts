// The contract between the proxy and whoever decides where traffic goes (the
// daemon). The daemon describes the desired routing as a plain ProxySpec; the
// proxy turns it into an immutable routing snapshot and swaps one reference.

import type { BalancePolicy, ServiceLimits, UpstreamConfig } from '../config/types.ts';

/** One running instance that may receive traffic. `id` is stable for the instance's life. */
export interface UpstreamTarget {
  id: string; // instance id, e.g. "web-3f2a1c"
  release: string; // release id
  host: string; // 127.0.0.1 for local instances; another host's address for a front service's target
  port: number;
  /** Relative share of new requests (1 unless a front service's target says otherwise). */
  weight?: number;
}

export interface ServiceRouteSpec {
  name: string;
  hosts: string[]; // lowercase host names without port
  isDefault: boolean;
  balance: BalancePolicy;
  upstream: UpstreamConfig;
  /** The instances in service (the stable release). Empty = the service answers 503. */
  targets: UpstreamTarget[];
  /** A canary release sharing the traffic, if one is being rolled out. */
  canary?: CanarySpec | null;
  /** Maintenance mode: a 503 page for everyone outside the allow-list. */
  maintenance?: MaintenanceSpec | null;
  /** Paused: new requests are held (bounded) until resumed, or answered 503 after maxWaitMs. */
  pause?: PauseSpec | null;
  /** A draining instance's WebSockets are closed one at a time over the last part of its drain (default 10 s). */
  wsCloseSpreadMs?: number;
  /** What the service accepts (body size) and holds (requests in flight, its queue); absent = no limit. */
  limits?: ServiceLimits | null;
}

/**
 * Weighted, sticky traffic split between the stable targets and a canary.
 *
 * Every visitor has a bucket in [0, 10000). A request goes to the canary when
 * its bucket < weight × 100, so as the weight grows a visitor only ever moves
 * from stable to canary, never back. The bucket comes from baton's own signed
 * cookie (set on the first response; a forged or garbled cookie counts as
 * absent), or for clients without cookies from `sticky.key`.
 */
export interface CanarySpec {
  release: string;
  targets: UpstreamTarget[];
  /** Percent of visitors (0–100) sent to the canary. */
  weight: number;
  sticky: StickySpec;
  overrides: OverrideSpec;
}

export interface StickySpec {
  /** Name of baton's bucket cookie (HttpOnly, SameSite=Lax, Path=/). */
  cookie: string;
  /** HMAC key that signs cookie values (bucket cookies and beta cookies). */
  secret: string;
  /** Bucket of a request without a valid cookie: from a header's value, the client address, or random (then the cookie is set). */
  key: { kind: 'random' } | { kind: 'header'; header: string } | { kind: 'client_address' };
}

/** Requests matching any rule go to the canary whatever the weight (beta testers). */
export interface OverrideSpec {
  /** A header and the value that selects the canary, e.g. X-Baton-Release: canary. */
  header: { name: string; value: string } | null;
  /** Name of the beta cookie; its value must be signed with sticky.secret (set through a beta link). */
  betaCookie: string | null;
  /** Client networks (CIDR, IPv4 or IPv6) always sent to the canary. */
  networks: string[];
}

export interface MaintenanceSpec {
  /** Full HTML of the 503 page. */
  html: string;
  retryAfterSeconds: number;
  /** Client networks (CIDR) that still reach the app. */
  allow: string[];
}

export interface PauseSpec {
  /** Requests held at most; more are answered 503 at once. */
  maxQueued: number;
  /** A held request waits at most this long, then gets 503. */
  maxWaitMs: number;
}

export interface ProxySpec {
  services: ServiceRouteSpec[];
}

export type { ServiceCounters } from '../core/counters.ts';

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

/** Cumulative figures of one release of a service, as the proxy saw them. Monotonic; the analysis takes differences. */
export interface ReleaseMetrics {
  service: string;
  release: string;
  requests: number;
  /** Responses by status class, whoever produced them (instance or baton). */
  status: { '1xx': number; '2xx': number; '3xx': number; '4xx': number; '5xx': number };
  /** Attempts baton could not get answered by an instance of this release (connect refused/timeout, reset before a response), retried ones included. */
  connectionErrors: number;
  /** Requests baton failed itself: its own 5xx pages (no instance, 502, 504, pause refusals; not maintenance) and responses cut midway. */
  failed: number;
  /** Responses with a 5xx status from an instance of this release: the app's errors. */
  appErrors: number;
  retries: number;
  /** HTTP requests being proxied to this release now (gauge). */
  inflight: number;
  /** WebSocket tunnels open to this release now (gauge). */
  websockets: number;
  /** WebSocket upgrades this release accepted (101), total. */
  websocketsTotal: number;
  /** Latency to the response head, histogram: counts[i] = requests with latency <= LATENCY_BUCKETS_MS[i]; the last entry (+Inf) = all. */
  latency: { bucketsMs: readonly number[]; counts: number[]; sumMs: number };
}

/** How a service's traffic was routed by the canary split, maintenance and pause, since the proxy started. Monotonic except heldNow. */
export interface RoutingCounters {
  /** Requests (and upgrades) the split sent to the stable pool, while a canary was active. */
  stable: number;
  /** Requests (and upgrades) the split sent to the canary pool, overrides included. */
  canary: number;
  /** Of `canary`: sent there by an override rule (header, beta cookie, network). */
  overrides: number;
  /** The chosen pool had no target: the other pool took the request. */
  fallbacks: number;
  /** Bucket cookies handed out (Set-Cookie on a response). */
  cookiesSet: number;
  /** Requests and upgrades answered with the maintenance page. */
  maintenance: number;
  /** Requests and upgrades held by a pause, total. */
  held: number;
  /** Held, then forwarded when the pause ended. */
  released: number;
  /** Held maxWaitMs, then answered 503. */
  expired: number;
  /** Refused at once with 503: the queue was full. */
  overflowed: number;
  /** The client left while held, or while waiting for a slot under limits.max_inflight. */
  abandoned: number;
  /** Held right now (gauge). */
  heldNow: number;
  /** Requests that waited for a slot under limits.max_inflight, total. */
  queued: number;
  /** Shed with 503 by limits.max_inflight: the queue was full, or the wait passed queue_timeout (queueTimeouts). Not failures. */
  shed: number;
  /** Of `shed`: those that waited queue_timeout. */
  queueTimeouts: number;
  /** Waiting for a slot right now (gauge). */
  queuedNow: number;
  /** Beta links accepted (cookie set) and refused (invalid, expired or used). */
  betaLinksAccepted: number;
  betaLinksRefused: number;
}

export interface DrainResult {
  /** Requests still running when the drain deadline passed (0 = all finished). */
  abandonedRequests: number;
  /** WebSockets closed by baton at the deadline (with close code 1001). */
  closedWebSockets: number;
  durationMs: number;
  /** The drain was called off before its deadline (the target went back into service); nothing was closed. */
  cancelled?: boolean;
}

/**
 * Remembers which beta link tokens were used, so each link works once. The
 * daemon passes one backed by its store, so "once" survives a restart.
 */
export interface BetaTokenLedger {
  /** Mark token `id` used; true the first time, false if it was used before. */
  claim(id: string, expiresAt: number): boolean;
}

/**
 * The proxy's cumulative counters as plain data (gauges left out), handed from
 * an old daemon to its successor at the end of `baton upgrade` so that totals
 * continue (Proxy.counterTotals / addCounterTotals).
 */
export interface CounterTotals {
  services: Record<string, import('../core/counters.ts').ServiceCounters>;
  routing: Record<string, Omit<RoutingCounters, 'heldNow' | 'queuedNow'>>;
  releases: { service: string; release: string; figures: Record<string, number>; hist: number[] }[];
}
