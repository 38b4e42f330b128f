// What the control plane and its proxy workers say to each other over each
// worker's IPC channel (src/daemon/workers.ts, src/daemon/worker-main.ts), and
// how the workers' figures add up. Plain data only: it crosses a process
// boundary as JSON.

import type { LogLevel } from '../core/log.ts';
import type { AccessLogConfig, ListenerSpec, ProxySettings, ProxySpec, ReleaseMetrics, RoutingCounters, ServiceCounters, TargetStats } from '../proxy/index.ts';
import type { CounterTotals } from '../proxy/types.ts';
import type { DrainResult, RequestLimits } from '../proxy/index.ts';
import type { TlsListenerOptions } from '../proxy/listeners.ts';
import type { CertificateSetEntry, PendingChallenges } from '../tls/index.ts';

/** The TLS listeners a worker serves, and how (the control plane's TlsFrontDoor decided it). */
export interface WorkerTls {
  listeners: ListenerSpec[];
  /** As the front door asked, without the two providers (the worker's own mirrors of the control plane's). */
  options: Omit<TlsListenerOptions, 'certificates' | 'acmeTlsAlpn'> & { tlsAlpn01: boolean };
}

/** The plain listeners' answers before routing when TLS is on (the redirect port; HTTP-01 from the worker's mirror). */
export interface WorkerPlainFront {
  redirectPort: number | null;
  http01: boolean;
}

/** Everything a worker needs to start: sent first, before it listens. */
export interface WorkerInit {
  t: 'init';
  index: number;
  listeners: ListenerSpec[];
  settings: ProxySettings;
  /** proxy.http1_fast_path (ProxyOptions.leanHttp1). */
  leanHttp1: boolean;
  logLevel: LogLevel;
  /** The store, opened by the worker for one thing: claiming used beta link tokens (an atomic insert). */
  dbFile: string;
  hostHealthy: boolean;
  version: number;
  spec: ProxySpec;
  /** How often the worker sends its figures. */
  reportEveryMs: number;
  /** null: no `tls:` (or not with these workers). */
  tls: WorkerTls | null;
  /** What is served on the TLS listeners now; later changes come as `certificates`. */
  certificates: CertificateSetEntry[];
  /** The pending ACME challenges now; later changes come as `challenges`. */
  challenges: PendingChallenges;
  plainFront: WorkerPlainFront | null;
  /** The worker's lines go to the control plane (`access-lines`), which writes this file. */
  accessLog: AccessLogConfig | null;
}

/** Control plane → worker. Messages on one channel arrive in order: a drain always follows the routing it was asked under. */
export type ToWorker =
  | WorkerInit
  | { t: 'apply'; version: number; spec: ProxySpec }
  | { t: 'drain'; id: number; targetId: string; deadlineMs: number }
  | { t: 'drain-abort'; id: number }
  | { t: 'forget'; targetId: string }
  | { t: 'settings'; clientIdleTimeoutMs: number; headersTimeoutMs: number; trustedProxies: string[]; limits: RequestLimits; maxConnectionsPerClient: number }
  | { t: 'host-health'; healthy: boolean }
  | { t: 'log-level'; level: LogLevel }
  /** What the TLS listeners serve from now on (a file replaced, a certificate issued or renewed). */
  | { t: 'certificates'; set: CertificateSetEntry[] }
  /** The pending ACME challenges; acknowledged with `challenges-applied` (the CA is told to look only then). */
  | { t: 'challenges'; id: number; challenges: PendingChallenges }
  | { t: 'plain-front'; front: WorkerPlainFront | null }
  | { t: 'access-log'; config: AccessLogConfig | null }
  | { t: 'close' }
  /** `baton upgrade`: a new daemon's workers accept on the same sockets now; stop accepting, drain (bounded), report, exit. */
  | { t: 'hand-over'; deadlineMs: number };

/** A worker's figures: cumulative since it started, except the gauges (inflight, websockets, heldNow). */
export interface WorkerReport {
  services: Record<string, ServiceCounters>;
  routing: Record<string, RoutingCounters>;
  releases: ReleaseMetrics[];
  targets: TargetStats[];
  /** The worker's resident memory, measured in the worker. */
  rss: number;
  /** Access log lines the worker dropped (its batch to the control plane was full); those written are counted where they are written. */
  accessLogDropped: number;
}

/** Worker → control plane. */
export type FromWorker =
  | { t: 'ready'; pid: number }
  | { t: 'failed'; message: string }
  | { t: 'applied'; version: number }
  | { t: 'drained'; id: number; result: DrainResult }
  | { t: 'challenges-applied'; id: number }
  /** A batch of `count` whole access log lines, for the control plane to write. */
  | { t: 'access-lines'; text: string; count: number }
  | { t: 'report'; report: WorkerReport };

export function emptyReport(): WorkerReport {
  return { services: {}, routing: {}, releases: [], targets: [], rss: 0, accessLogDropped: 0 };
}

/** Routing counters that are gauges (now), not totals: a dead worker's are gone with it. */
const ROUTING_GAUGES = ['heldNow', 'queuedNow'] as const;

/** The same fields as `like`, all zero: the sum takes its fields from what the workers send. */
function zeroLike<T extends object>(like: T): T {
  return Object.fromEntries(Object.keys(like).map((k) => [k, 0])) as T;
}

function addNumbers<T extends object>(into: T, from: T): void {
  const a = into as Record<string, unknown>;
  for (const [k, v] of Object.entries(from)) if (typeof v === 'number' && Number.isFinite(v)) a[k] = (typeof a[k] === 'number' ? (a[k] as number) : 0) + v;
}

function addRelease(into: ReleaseMetrics, from: ReleaseMetrics): void {
  addNumbers(into, from);
  addNumbers(into.status, from.status);
  into.latency.sumMs += from.latency.sumMs;
  into.latency.counts = into.latency.counts.map((c, i) => c + (from.latency.counts[i] ?? 0));
}

function copyRelease(m: ReleaseMetrics): ReleaseMetrics {
  return { ...m, status: { ...m.status }, latency: { ...m.latency, counts: [...m.latency.counts] } };
}

/**
 * The sum of several workers' reports. With `gauges: false` the gauges are
 * left out (zero): what a dead worker leaves behind is its cumulative totals,
 * not its in-flight requests.
 */
export function sumReports(reports: readonly WorkerReport[], opts: { gauges: boolean } = { gauges: true }): WorkerReport {
  const out = emptyReport();
  const releases = new Map<string, ReleaseMetrics>();
  const targets = new Map<string, TargetStats>();
  for (const r of reports) {
    out.accessLogDropped += r.accessLogDropped ?? 0;
    for (const [name, c] of Object.entries(r.services)) addNumbers((out.services[name] ??= zeroLike(c)), c);
    for (const [name, c] of Object.entries(r.routing)) {
      const mine = (out.routing[name] ??= zeroLike(c));
      const totals: Record<string, number> = { ...c };
      if (!opts.gauges) for (const k of ROUTING_GAUGES) if (k in totals) totals[k] = 0;
      addNumbers(mine, totals as unknown as RoutingCounters);
    }
    for (const m of r.releases) {
      const key = `${m.service}\n${m.release}`;
      const from = opts.gauges ? m : { ...m, inflight: 0, websockets: 0 };
      const mine = releases.get(key);
      if (mine === undefined) releases.set(key, copyRelease(from));
      else addRelease(mine, from);
    }
    for (const t of r.targets) {
      const from = opts.gauges ? t : { ...t, inflight: 0, websockets: 0 };
      const mine = targets.get(t.id);
      if (mine === undefined) targets.set(t.id, { ...from });
      else {
        mine.inflight += from.inflight;
        mine.websockets += from.websockets;
        mine.requests += from.requests;
      }
    }
  }
  if (opts.gauges) for (const r of reports) out.rss += r.rss;
  out.releases = [...releases.values()];
  out.targets = [...targets.values()];
  return out;
}

/**
 * The cumulative part of one release's figures in the form a successor daemon
 * adds (`CounterTotals`, as `ReleaseStats.totals()` writes it): the histogram
 * per bucket, not cumulative over buckets.
 */
export function releaseTotals(m: ReleaseMetrics): CounterTotals['releases'][number] {
  const figures: Record<string, number> = {
    requests: m.requests,
    s1: m.status['1xx'],
    s2: m.status['2xx'],
    s3: m.status['3xx'],
    s4: m.status['4xx'],
    s5: m.status['5xx'],
    connectionErrors: m.connectionErrors,
    failed: m.failed,
    appErrors: m.appErrors,
    retries: m.retries,
    websocketsTotal: m.websocketsTotal,
    sumMs: m.latency.sumMs,
  };
  const hist = m.latency.counts.map((c, i) => c - (i === 0 ? 0 : m.latency.counts[i - 1]!));
  return { service: m.service, release: m.release, figures, hist };
}
