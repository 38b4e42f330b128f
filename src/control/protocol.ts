// The control API's shapes, shared by the daemon's server and the CLI's client.
// JSON over HTTP on a Unix socket. Long operations answer with NDJSON: one
// event per line, the last line `{ "type": "result", ... }`.

import type { DeployEvent, DeployOutcome, PushSource, Until } from '../core/deployment.ts';
import type { ServiceCounters } from '../core/counters.ts';

export const API_PREFIX = '/v1';

export interface InstanceStatus {
  id: string;
  release: string;
  /** See GroupRole in src/deploy/release-group.ts. */
  role: 'incoming' | 'current' | 'canary' | 'draining' | 'standby' | 'retiring';
  pid: number;
  port: number;
  state: string; // starting | healthy | unhealthy | stopping | exited
  healthy: boolean;
  inflight: number;
  websockets: number;
  requests: number;
  startedAt: number;
  lastHealthError: string | null;
}

export interface ServiceStatus {
  name: string;
  hosts: string[];
  isDefault: boolean;
  currentRelease: string | null;
  /** The rollback target (the previous release), warm or not. */
  standbyRelease: string | null;
  /** Until when the standby's processes keep running (null: not running). */
  standbyWarmUntil: number | null;
  /** The deployment holding the service (until its switch): its number within the service. */
  deploying: number | null;
  /** Old instances still finishing their requests and WebSockets after a switch (a rollback to them is instant). */
  draining: DrainingStatus[];
  counters: ServiceCounters;
  /** The in-flight cap (limits.max_inflight): requests shed with 503 since start (of which after waiting queue_timeout), and waiting now. Not failures. */
  shedding: { shed: number; queueTimeouts: number; queuedNow: number };
  instances: InstanceStatus[];
  /** The canary rollout in progress. */
  canary: {
    release: string;
    weight: number;
    step: number; // 1-based
    steps: string[];
    waiting: 'pause' | 'promote' | 'analysis' | null;
  } | null;
  maintenance: { message: string; since: number } | null;
  paused: boolean;
  /** Live figures of each release the proxy has routed to, since the daemon started. */
  releases: ReleaseFigures[];
}

export interface HostDrainStatus {
  mode: 'ready' | 'drain' | 'maint';
  weightPercent: number | null;
  since: number;
  reason: string;
}

export interface DrainingStatus {
  release: string;
  /** The deployment that switched away from this release: its number within the service. */
  seq: number;
  instances: number;
  /** When the drain deadline passes (epoch ms). */
  deadline: number;
  inflight: number;
  websockets: number;
  /** The WebSockets still open are closed one at a time from this time (epoch ms; `ws_close_spread`), the last at the deadline. */
  websocketsCloseFrom: number;
}

export interface ReleaseFigures {
  release: string;
  requests: number;
  status: { '1xx': number; '2xx': number; '3xx': number; '4xx': number; '5xx': number };
  connectionErrors: number;
  /** Requests baton failed itself (its own 5xx pages except maintenance, responses cut midway). */
  failed: number;
  /** 5xx responses from the release's instances: the app's errors. */
  appErrors: number;
  inflight: number;
  websockets: number;
  p99Ms: number | null;
  /**
   * The cumulative latency histogram behind p99Ms (counts[i] = responses with a
   * head within bucketsMs[i]; the last is +Inf): a fleet rollout takes the
   * difference of two samples to judge a canary host's latency over its bake.
   * Absent from daemons older than this field.
   */
  latency?: { bucketsMs: readonly number[]; counts: number[] };
}

export interface StatusResponse {
  daemon: {
    pid: number;
    version: string;
    startedAt: number;
    config: string;
    listeners: string[];
    stateDir: string;
    controlSocket?: string;
    /** With `proxy.workers` > 1: each worker process, its requests since it (re)started and its restarts. */
    proxyWorkers?: { index: number; pid: number | null; requests: number; restarts: number; rss: number }[];
    /** proxy.access_log: where, lines written and lines dropped (the disk was slower than the traffic) since the daemon started; null when off. */
    accessLog?: { path: string; written: number; dropped: number } | null;
  };
  /** This host's place in the balancer in front (src/daemon/agent-check.ts). */
  host: { drain: HostDrainStatus; agentCheck: string | null };
  services: ServiceStatus[];
  /** HTTPS listeners and certificates; absent or null without `tls:` in the config. */
  tls?: TlsStatus | null;
  /** Front services: baton balancing other hosts' listeners (src/front). */
  fronts?: FrontServiceStatus[];
}

/** One host behind a front service, as the front daemon sees it. */
export interface FrontTargetStatus {
  name: string;
  address: string;
  /** Configured weight, and the one in use (an agent's "up NN%" scales it). */
  weight: number;
  effectiveWeight: number;
  /**
   * up: gets new requests; checking: no verdict yet; down: failed its checks;
   * drain: the host says it is drained (503 "draining", or its agent), or the
   * operator drained it here (`operator` says so); maint: its agent says maint.
   */
  state: 'up' | 'checking' | 'down' | 'drain' | 'maint';
  inRotation: boolean;
  /** The last check's failure, or why the target gets nothing; null when up. */
  reason: string | null;
  /** What the target's agent-check said last ("ready up 50%"), or why it could not be asked; null without `agent:`. */
  agent: string | null;
  /** This daemon's operator drained the target (`baton target drain`): kept across restarts. */
  operator: { mode: 'drain'; since: number; reason: string } | null;
  /** Since when the target has been in (or out of) rotation (epoch ms). */
  since: number;
  lastCheckAt: number | null;
  inflight: number;
  websockets: number;
  /** Requests sent to it since this daemon started (counted when sent, retries included). */
  requests: number;
  /** Its answers by status class (counted when the head arrives), and what it could not answer. */
  status: { '1xx': number; '2xx': number; '3xx': number; '4xx': number; '5xx': number };
  connectionErrors: number;
  retries: number;
  p99Ms: number | null;
}

export interface FrontServiceStatus {
  name: string;
  hosts: string[];
  isDefault: boolean;
  balance: string;
  check: { path: string; intervalMs: number; timeoutMs: number; healthyThreshold: number; unhealthyThreshold: number };
  counters: ServiceCounters;
  targets: FrontTargetStatus[];
}

/** What the TLS front door serves (docs/tls.md). Dates are ISO 8601. */
export interface TlsStatus {
  listeners: string[];
  http2: boolean;
  certificates: Array<{ hosts: string[]; source: 'file' | 'acme'; file: string | null; notAfter: string; isDefault: boolean }>;
  acme: { hosts: string[]; directory: string; notAfter: string | null; renewAt: string | null; failures: number; lastError: string | null; nextAttempt: string | null } | null;
}

export interface ReleaseInfo {
  id: string;
  name: string;
  kind: 'dir' | 'git';
  git: { commit: string; ref: string; author: string; message: string } | null;
  buildStatus: 'none' | 'ok' | 'failed';
  buildMs: number | null;
  sourcePath: string;
  dir: string;
  createdAt: number;
  lastDeployedAt: number | null;
  current: boolean;
  standby: boolean;
}

export interface DeploymentInfo {
  /** The store's key, global across services (internal; names nothing for users). */
  id: number;
  /** The deployment's number within its service: 1, 2, 3… (`web#12`); what every user-facing place shows. */
  seq: number;
  kind: string;
  fromRelease: string | null;
  toRelease: string;
  actor: string;
  state: string;
  startedAt: number;
  finishedAt: number | null;
  error: string | null;
  requests: number;
  failed: number;
  events?: { at: number; step: string; level: string; message: string; durationMs: number | null }[];
}

export interface ReloadResult {
  config: string;
  changes: string[];
}

/** One step of `baton upgrade`, as the old daemon streams it. */
export interface UpgradeProgress {
  at: number;
  step: 'frozen' | 'spawned' | 'serving' | 'draining' | 'failed' | 'resumed';
  message: string;
  pid?: number;
}

/** How `baton upgrade` ended: the new daemon serves, the old one drains. */
export interface UpgradeResult {
  oldPid: number;
  newPid: number;
  /** From the command to the new daemon's `ready` (store open, instances re-adopted, listening). */
  msToServing: number;
  /** The old daemon closes what is left (WebSockets, with 1001) at this time, then exits. */
  drainDeadline: number;
  inflight: number;
  webSockets: number;
}

export type StreamLine =
  | { type: 'event'; event: DeployEvent }
  | { type: 'upgrade'; progress: UpgradeProgress }
  | { type: 'upgraded'; result: UpgradeResult }
  | { type: 'result'; outcome: DeployOutcome }
  | { type: 'error'; error: ApiError };

export interface ApiError {
  code: string;
  message: string;
  details: string[];
}

export type { DeploySource, PushSource, Until } from '../core/deployment.ts';

export interface DeployRequest {
  releaseDir?: string;
  ref?: string;
  push?: PushSource;
  strategy?: 'blue_green' | 'canary';
  steps?: string;
  actor?: string;
  until?: Until;
}
export interface RollbackRequest {
  to?: string;
  actor?: string;
  until?: Until;
}
