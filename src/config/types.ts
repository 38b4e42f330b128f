// The normalised configuration the rest of baton works with. Durations are in
// milliseconds; defaults are filled in; names are resolved. The YAML shape and
// its validation live in schema.ts.

export type StopSignal = 'SIGTERM' | 'SIGINT' | 'SIGQUIT' | 'SIGWINCH' | 'SIGUSR1' | 'SIGUSR2' | 'SIGHUP' | 'SIGKILL';
export type BalancePolicy = 'least_outstanding' | 'round_robin';

export interface ListenerConfig {
  host: string; // e.g. 127.0.0.1
  port: number;
  /** Every connection starts with a PROXY protocol header (v1 or v2) from a trusted proxy; set only when true. */
  proxyProtocol?: true;
}

export interface HealthConfig {
  path: string; // GET path, e.g. /healthz
  intervalMs: number;
  timeoutMs: number;
  healthyThreshold: number; // consecutive successes before traffic
  unhealthyThreshold: number; // consecutive failures before removal
  startTimeoutMs: number; // max time from spawn to healthy
}

export interface UpstreamConfig {
  /** Idle pooled connections to an instance are closed after this; keep it below the app's keep-alive timeout. */
  keepAliveTimeoutMs: number;
  connectTimeoutMs: number;
  /** Max wait for the response headers from an instance (504 after). */
  responseTimeoutMs: number;
}

export interface GitSourceConfig {
  /** A local path (absolute once normalised) or any URL git understands. */
  repo: string;
  branch: string;
}

export interface HookConfig {
  command: string; // run with /bin/sh -c in the release directory
  timeoutMs: number;
}

export interface HooksConfig {
  build: HookConfig | null; // before any instance starts; cached per release
  migrate: HookConfig | null; // once per deployment, under a lock, before traffic moves
  smoke: HookConfig | null; // against the private preview URL, before the switch
  afterSwitch: HookConfig | null; // once traffic has moved
}

export type CanaryStep =
  | { kind: 'weight'; weight: number } // send this percent of visitors to the canary
  | { kind: 'pause'; ms: number }
  | { kind: 'pause_until_promoted' } // wait for `baton promote`
  | { kind: 'analysis'; windowMs: number }; // compare canary and stable over a window

export interface AnalysisConfig {
  windowMs: number;
  /** Requests the canary must have served in the window before any verdict. */
  minRequests: number;
  /** Highest 5xx share of the canary's responses, and how far it may exceed the stable release's. */
  maxErrorRate: number;
  maxConnectionErrorRate: number;
  /** Canary p99 latency may be at most this multiple of the stable p99 (or of p99FloorMs, whichever is larger). */
  maxP99Ratio: number;
  p99FloorMs: number;
  /** A command whose exit code is the verdict (business checks). */
  check: HookConfig | null;
}

export type StickyKey = { kind: 'random' } | { kind: 'client_address' } | { kind: 'header'; header: string };

export interface CanaryConfig {
  steps: CanaryStep[];
  analysis: AnalysisConfig;
  sticky: { cookie: string; key: StickyKey };
  beta: { cookie: string; header: { name: string; value: string } | null; networks: string[] };
}

export interface MaintenanceConfig {
  /** Absolute path of the HTML page, or null for baton's own. */
  pageFile: string | null;
  retryAfterSeconds: number;
  allow: string[]; // CIDR
}

/** What one service accepts and holds (413, and the in-flight cap). */
export interface ServiceLimits {
  /** Largest request body passed to an instance, in bytes (413 beyond); null = no limit. */
  maxBodyBytes: number | null;
  /** Requests proxied to the service at once; beyond, they wait in a queue; null = no cap. */
  maxInflight: number | null;
  /** Requests waiting for a slot at most; more are shed (503) at once. */
  maxQueued: number;
  /** A waiting request is shed (503) after this. */
  queueTimeoutMs: number;
}

export interface PauseConfig {
  maxQueued: number;
  maxWaitMs: number;
}

/** Whom a service's instances and hooks run as (setuid/setgid at spawn). */
export interface RunAs {
  user: string;
  uid: number;
  gid: number;
  home: string;
}

export interface ServiceConfig {
  name: string;
  hosts: string[]; // Host header names (lowercase, no port); empty = only reachable as default
  isDefault: boolean; // gets requests whose Host matches no service
  command: string; // run with /bin/sh -c in the release directory
  env: Record<string, string>;
  /** Run instances, hooks and builds as this user; null = as the daemon's user. */
  runAs: RunAs | null;
  /** Where visitors reach the service (links such as `baton beta`); null = from the listeners and hosts. */
  publicUrl: string | null;
  /** Instance logs: rotated past maxBytes, keeping `keep` older files (<id>.log.1 …). */
  logs: { maxBytes: number; keep: number };
  instances: number;
  health: HealthConfig;
  drainTimeoutMs: number;
  /** WebSockets left near the drain deadline are closed one at a time over its last wsCloseSpreadMs (at most the whole drain). */
  wsCloseSpreadMs: number;
  stopSignal: StopSignal;
  stopTimeoutMs: number;
  /** How long the previous release keeps running (not routed) for instant rollback. 0 = stop it after draining. */
  standbyMs: number;
  balance: BalancePolicy;
  upstream: UpstreamConfig;
  /** Releases kept on disk, beyond the current and the standby. */
  keepReleases: number;
  /** Where `baton deploy SERVICE` (without a directory) takes releases from. */
  git: GitSourceConfig | null;
  /** Paths inside each release linked to <stateDir>/shared/<service>/<path> (uploads, .env, a SQLite file). */
  shared: string[];
  hooks: HooksConfig;
  /** How `baton deploy` moves traffic unless told otherwise. */
  strategy: 'blue_green' | 'canary';
  canary: CanaryConfig;
  maintenance: MaintenanceConfig;
  pause: PauseConfig;
  limits: ServiceLimits;
}

/** One host behind a front service: another host's baton listener (HAProxy's `server` line). */
export interface RemoteTargetConfig {
  /** Its name in the config, status and metrics (`release` label): "web1". */
  name: string;
  host: string;
  port: number;
  /** Share of new requests relative to the other targets (1–256). */
  weight: number;
  /** The host's agent-check listener (ready / drain / maint / up NN%), polled with the health check; null = none. */
  agent: ListenerConfig | null;
}

/** How a front service checks its targets: GET `path` on each target every interval. */
export interface TargetCheckConfig {
  path: string;
  intervalMs: number;
  timeoutMs: number;
  /** Consecutive successes before a target (back) gets traffic. */
  healthyThreshold: number;
  /** Consecutive failures before it is taken out. */
  unhealthyThreshold: number;
}

/**
 * A service whose targets are other hosts' baton listeners rather than
 * processes this daemon runs: baton as the front balancer of a small fleet.
 */
export interface FrontServiceConfig {
  name: string;
  hosts: string[];
  isDefault: boolean;
  targets: RemoteTargetConfig[];
  health: TargetCheckConfig;
  balance: BalancePolicy;
  upstream: UpstreamConfig;
  /** A target removed from the config (or drained by the operator with a deadline) is waited for this long. */
  drainTimeoutMs: number;
  wsCloseSpreadMs: number;
  /** Body size and in-flight cap, as for a supervised service (protects the hosts behind). */
  limits: ServiceLimits;
}

export interface ProxyConfig {
  /** Idle keep-alive client connections are closed after this. */
  clientIdleTimeoutMs: number;
  /** Max time for a client to send the request headers. */
  headersTimeoutMs: number;
  /**
   * Networks (CIDR or single addresses) of the proxies in front of baton: their
   * X-Forwarded-* and Forwarded headers are kept (appended to), and only they may
   * send the PROXY protocol. Anyone else's are replaced.
   */
  trustedProxies: string[];
  /** Bytes of the request line and header fields together (431 beyond; the parser's bound, per connection). */
  maxHeaderSize: number;
  /** Header fields in one request (431 beyond). */
  maxHeaders: number;
  /** Bytes of the request target (414 beyond). */
  maxUrlLength: number;
  /** Open connections one client address may hold on the plain listeners (trusted proxies are not capped). */
  maxConnectionsPerClient: number;
  /**
   * Proxy worker processes sharing the public listeners (`proxy.workers`,
   * "auto" resolved to the cores here). 1: the proxy runs inside the daemon.
   */
  workers: number;
  /**
   * The access log (`proxy.access_log`), or null (off, the default): one JSON
   * line per request to `path` (absolute, or "stdout": the daemon's own log
   * stream), rotated past maxBytes keeping `keep` older files (<path>.1 …).
   */
  accessLog: { path: string; maxBytes: number; keep: number } | null;
  /**
   * Plain HTTP/1.1 requests (no body, HTTP/1.1) are served by baton's own
   * server path (src/proxy/h1/); false: node:http serves every request, as
   * before it existed (`proxy.http1_fast_path`).
   */
  http1FastPath: boolean;
}

export interface CertificateFiles {
  /** Names it serves (lowercase; "*.example.com" covers one label). */
  hosts: string[];
  certFile: string; // absolute
  keyFile: string; // absolute
  /** Served to clients that send no SNI, or a name no certificate covers. */
  isDefault: boolean;
}

/** How the CA checks that baton answers for a name: on the plain port 80 (http-01) or the TLS port 443 (tls-alpn-01). */
export type AcmeChallenge = 'http-01' | 'tls-alpn-01';

export interface AcmeConfig {
  /** Names to obtain one certificate for. */
  hosts: string[];
  /** http-01: answered by the plain listeners; tls-alpn-01: by the TLS listeners (protocol acme-tls/1). */
  challenge: AcmeChallenge;
  email: string | null;
  directoryUrl: string;
  /** Extra CA to trust for the directory's HTTPS (a private ACME server); null = the system's. */
  caFile: string | null;
  /** Renew once less than this is left; null = min(30 days, a third of the lifetime). */
  renewBeforeMs: number | null;
}

export interface TlsConfig {
  listeners: ListenerConfig[];
  certificates: CertificateFiles[];
  acme: AcmeConfig | null;
  /** Offer HTTP/2 by ALPN (HTTP/1.1 stays available). */
  http2: boolean;
  /** Plain listeners answer 308 to https:// (except ACME challenges and /_baton/health). */
  redirectHttp: boolean;
  /** Strict-Transport-Security on HTTPS responses. */
  hsts: boolean;
  handshakeTimeoutMs: number;
  maxConcurrentStreams: number;
  /** Open connections one client address may hold on a TLS listener. */
  maxConnectionsPerClient: number;
}

export interface DashboardConfig {
  listener: ListenerConfig;
  /** A signed-in browser is signed out after this long without a request. */
  sessionTimeoutMs: number;
}

/** The control API on a TCP port: TLS always, and a bearer token read from a file at start. */
export interface RemoteControlConfig {
  listener: ListenerConfig;
  certFile: string; // absolute
  keyFile: string; // absolute
  tokenFile: string; // absolute
}

export interface DaemonConfig {
  /** Absolute path of the file this was read from. */
  file: string;
  listeners: ListenerConfig[];
  stateDir: string; // absolute
  controlSocket: string; // absolute path of the Unix socket
  /** Who may use the control socket besides the daemon's user: its group and mode. */
  control: { gid: number | null; group: string | null; mode: number; remote: RemoteControlConfig | null };
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Where Prometheus scrapes /metrics (never the public listeners); null = off. */
  metricsListener: ListenerConfig | null;
  /** The operator's web dashboard on its own loopback listener; null = off. */
  dashboard: DashboardConfig | null;
  /** Where HAProxy's agent-check asks this host's drain state (ready / drain / maint / up NN%); null = off. */
  agentCheckListener: ListenerConfig | null;
  proxy: ProxyConfig;
  /** HTTPS listeners and their certificates; null = plain HTTP only. */
  tls: TlsConfig | null;
  services: ServiceConfig[];
  /** Services with `targets:` (other hosts' listeners) instead of a command: baton as the front balancer. */
  fronts: FrontServiceConfig[];
}
