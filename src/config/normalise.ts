// From the checked YAML shape to the DaemonConfig the rest of baton uses:
// defaults filled in, paths made absolute, the default service decided.

import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { BatonError } from '../core/errors.ts';
import * as d from './defaults.ts';
import { parseListenAddress } from './listen.ts';
import type { RawAccessLog, RawConfig, RawService } from './schema.ts';
import type { CanaryConfig, CanaryStep, DaemonConfig, FrontServiceConfig, HookConfig, ListenerConfig, ProxyConfig, ServiceConfig, TlsConfig } from './types.ts';

export interface ResolvedPaths {
  file: string;
  stateDir: string;
  controlSocket: string;
}

/** Paths in the config are relative to the directory of the config file. */
export function resolvePaths(file: string, stateDir: string | undefined, controlSocket: string | undefined): ResolvedPaths {
  const abs = resolve(file);
  const base = dirname(abs);
  const state = resolve(base, stateDir ?? d.DEFAULT_STATE_DIR);
  return {
    file: abs,
    stateDir: state,
    controlSocket: controlSocket === undefined ? join(state, d.DEFAULT_CONTROL_SOCKET_NAME) : resolve(base, controlSocket),
  };
}

export function normalise(raw: RawConfig, file: string): DaemonConfig {
  const paths = resolvePaths(file, raw.state_dir, raw.control_socket);
  const entries = Object.entries(raw.services);
  // A lone service serves every host unless it opts out; with several, only an explicit default does.
  const lone = entries.length === 1;
  return {
    ...paths,
    control: {
      gid: raw.control?.group?.gid ?? null,
      group: raw.control?.group?.name ?? null,
      // A group given without a mode means the group is to use the socket.
      mode: raw.control?.mode ?? (raw.control?.group ? 0o660 : 0o600),
      remote: raw.control?.remote
        ? {
            listener: raw.control.remote.listen,
            certFile: resolve(dirname(paths.file), raw.control.remote.cert),
            keyFile: resolve(dirname(paths.file), raw.control.remote.key),
            tokenFile: resolve(dirname(paths.file), raw.control.remote.token_file),
          }
        : null,
    },
    listeners: raw.listen ?? defaultListeners(),
    logLevel: raw.log_level ?? d.DEFAULT_LOG_LEVEL,
    metricsListener: raw.metrics_listen ?? null,
    dashboard: raw.dashboard
      ? { listener: raw.dashboard.listen, sessionTimeoutMs: raw.dashboard.session_timeout ?? d.DEFAULT_DASHBOARD_SESSION_TIMEOUT_MS }
      : null,
    agentCheckListener: raw.agent_check ?? null,
    proxy: {
      clientIdleTimeoutMs: raw.proxy?.client_idle_timeout ?? d.DEFAULT_CLIENT_IDLE_TIMEOUT_MS,
      headersTimeoutMs: raw.proxy?.headers_timeout ?? d.DEFAULT_HEADERS_TIMEOUT_MS,
      trustedProxies: raw.proxy?.trusted_proxies ?? [],
      maxHeaderSize: raw.proxy?.max_header_size ?? d.DEFAULT_MAX_HEADER_SIZE,
      maxHeaders: raw.proxy?.max_headers ?? d.DEFAULT_MAX_HEADERS,
      maxUrlLength: raw.proxy?.max_url_length ?? d.DEFAULT_MAX_URL_LENGTH,
      maxConnectionsPerClient: raw.proxy?.max_connections_per_client ?? d.DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
      workers: raw.proxy?.workers === 'auto' ? availableParallelism() : (raw.proxy?.workers ?? 1),
      accessLog: normaliseAccessLog(raw.proxy?.access_log, dirname(paths.file)),
      http1FastPath: raw.proxy?.http1_fast_path ?? true,
    },
    tls: raw.tls ? tls(raw.tls, dirname(paths.file)) : null,
    services: entries.filter(([, s]) => s.targets === undefined).map(([name, s]) => service(name, s, s.default ?? lone, dirname(paths.file))),
    fronts: entries.filter(([, s]) => s.targets !== undefined).map(([name, s]) => front(name, s, s.default ?? lone)),
  };
}

function tls(t: NonNullable<RawConfig['tls']>, base: string): TlsConfig {
  const certs = t.certificates ?? [];
  // The first certificate is the default unless one says so.
  const explicit = certs.some((c) => c.default === true);
  const a = t.acme ?? null;
  return {
    listeners: t.listen,
    certificates: certs.map((c, i) => ({
      hosts: [...new Set(c.hosts)],
      certFile: resolve(base, c.cert),
      keyFile: resolve(base, c.key),
      isDefault: explicit ? c.default === true : i === 0,
    })),
    acme: a === null
      ? null
      : {
          hosts: [...new Set(a.hosts)],
          email: a.email ?? null,
          directoryUrl: a.directory ?? d.DEFAULT_ACME_DIRECTORY,
          caFile: a.ca_file === undefined ? null : resolve(base, a.ca_file),
          renewBeforeMs: a.renew_before ?? null,
          challenge: a.challenge ?? 'http-01',
        },
    http2: t.http2 ?? d.DEFAULT_TLS_HTTP2,
    redirectHttp: t.redirect_http ?? false,
    hsts: t.hsts ?? false,
    handshakeTimeoutMs: t.handshake_timeout ?? d.DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
    maxConcurrentStreams: t.max_concurrent_streams ?? d.DEFAULT_MAX_CONCURRENT_STREAMS,
    maxConnectionsPerClient: t.max_connections_per_client ?? d.DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
  };
}

function defaultListeners(): ListenerConfig[] {
  return d.DEFAULT_LISTEN.map((text) => {
    const addr = parseListenAddress(text);
    if (typeof addr === 'string') throw new BatonError('INTERNAL', `bad DEFAULT_LISTEN ${text}: ${addr}`);
    return addr;
  });
}

/** A repo that is not a URL (scheme://… or scp-like user@host:path) is a local path, relative to the config file. */
export function resolveRepo(repo: string, base: string): string {
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(repo) || /^[^/]+@[^/:]+:/.test(repo)) return repo;
  return resolve(base, repo);
}

function canary(c: RawService['canary']): CanaryConfig {
  const a = c?.analysis ?? null;
  const windowMs = a?.window ?? d.DEFAULT_ANALYSIS_WINDOW_MS;
  const steps: CanaryStep[] = (c?.steps ?? d.DEFAULT_CANARY_STEPS).map((st): CanaryStep => {
    if ('weight' in st) return { kind: 'weight', weight: st.weight };
    if ('pauseMs' in st) return { kind: 'pause', ms: st.pauseMs };
    if ('pauseUntilPromoted' in st) return { kind: 'pause_until_promoted' };
    return { kind: 'analysis', windowMs: st.analysisMs ?? windowMs };
  });
  const key = c?.sticky?.key ?? 'random';
  const header = c?.beta?.header;
  const colon = header?.indexOf(':') ?? -1;
  return {
    steps,
    analysis: {
      windowMs,
      minRequests: a?.min_requests ?? d.DEFAULT_ANALYSIS_MIN_REQUESTS,
      maxErrorRate: a?.max_error_rate ?? d.DEFAULT_MAX_ERROR_RATE,
      maxConnectionErrorRate: a?.max_connection_error_rate ?? d.DEFAULT_MAX_CONNECTION_ERROR_RATE,
      maxP99Ratio: a?.max_p99_ratio ?? d.DEFAULT_MAX_P99_RATIO,
      p99FloorMs: a?.p99_floor ?? d.DEFAULT_P99_FLOOR_MS,
      check: a?.check ? { command: a.check.command, timeoutMs: a.check.timeout ?? d.DEFAULT_CHECK_TIMEOUT_MS } : null,
    },
    sticky: {
      cookie: c?.sticky?.cookie ?? d.DEFAULT_STICKY_COOKIE,
      key: key === 'random' || key === 'client_address' ? { kind: key } : { kind: 'header', header: key.slice('header:'.length).toLowerCase() },
    },
    beta: {
      cookie: c?.beta?.cookie ?? d.DEFAULT_BETA_COOKIE,
      header: header && colon > 0 ? { name: header.slice(0, colon).trim().toLowerCase(), value: header.slice(colon + 1).trim() } : null,
      networks: c?.beta?.networks ?? [],
    },
  };
}

type RawHook = { command: string; timeout?: number } | undefined;

function hook(h: RawHook, name: keyof typeof d.DEFAULT_HOOK_TIMEOUT_MS): HookConfig | null {
  return h ? { command: h.command, timeoutMs: h.timeout ?? d.DEFAULT_HOOK_TIMEOUT_MS[name] } : null;
}

/** A service with `targets`: the hosts behind this front balancer (rules.ts refused the process settings). */
function front(name: string, s: RawService, isDefault: boolean): FrontServiceConfig {
  return {
    name,
    hosts: s.hosts ?? [],
    isDefault,
    targets: Object.entries(s.targets ?? {}).map(([t, x]) => ({
      name: t,
      host: x.address.host,
      port: x.address.port,
      weight: x.weight ?? d.DEFAULT_TARGET_WEIGHT,
      agent: x.agent ?? null,
    })),
    health: {
      path: s.health?.path ?? d.DEFAULT_TARGET_HEALTH_PATH,
      intervalMs: s.health?.interval ?? d.DEFAULT_HEALTH_INTERVAL_MS,
      timeoutMs: s.health?.timeout ?? d.DEFAULT_HEALTH_TIMEOUT_MS,
      healthyThreshold: s.health?.healthy_threshold ?? d.DEFAULT_TARGET_HEALTHY_THRESHOLD,
      unhealthyThreshold: s.health?.unhealthy_threshold ?? d.DEFAULT_TARGET_UNHEALTHY_THRESHOLD,
    },
    balance: s.balance ?? d.DEFAULT_BALANCE,
    upstream: upstream(s),
    drainTimeoutMs: s.drain_timeout ?? d.DEFAULT_DRAIN_TIMEOUT_MS,
    wsCloseSpreadMs: s.ws_close_spread ?? d.DEFAULT_WS_CLOSE_SPREAD_MS,
    limits: limits(s),
  };
}

function upstream(s: RawService): ServiceConfig['upstream'] {
  return {
    keepAliveTimeoutMs: s.upstream?.keepalive_timeout ?? d.DEFAULT_UPSTREAM_KEEPALIVE_TIMEOUT_MS,
    connectTimeoutMs: s.upstream?.connect_timeout ?? d.DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS,
    responseTimeoutMs: s.upstream?.response_timeout ?? d.DEFAULT_UPSTREAM_RESPONSE_TIMEOUT_MS,
  };
}

function service(name: string, s: RawService, isDefault: boolean, base: string): ServiceConfig {
  return {
    name,
    hosts: s.hosts ?? [],
    isDefault,
    command: s.command ?? '',
    env: s.env ?? {},
    runAs: s.user ? { user: s.user.name, uid: s.user.uid, gid: s.group?.gid ?? s.user.gid, home: s.user.home } : null,
    publicUrl: s.public_url ?? null,
    logs: { maxBytes: s.logs?.max_size ?? d.DEFAULT_LOG_MAX_BYTES, keep: s.logs?.keep ?? d.DEFAULT_LOG_KEEP },
    instances: s.instances ?? d.DEFAULT_INSTANCES,
    health: {
      path: s.health?.path ?? d.DEFAULT_HEALTH_PATH,
      intervalMs: s.health?.interval ?? d.DEFAULT_HEALTH_INTERVAL_MS,
      timeoutMs: s.health?.timeout ?? d.DEFAULT_HEALTH_TIMEOUT_MS,
      healthyThreshold: s.health?.healthy_threshold ?? d.DEFAULT_HEALTHY_THRESHOLD,
      unhealthyThreshold: s.health?.unhealthy_threshold ?? d.DEFAULT_UNHEALTHY_THRESHOLD,
      startTimeoutMs: s.health?.start_timeout ?? d.DEFAULT_START_TIMEOUT_MS,
    },
    drainTimeoutMs: s.drain_timeout ?? d.DEFAULT_DRAIN_TIMEOUT_MS,
    wsCloseSpreadMs: s.ws_close_spread ?? d.DEFAULT_WS_CLOSE_SPREAD_MS,
    stopSignal: s.stop_signal ?? d.DEFAULT_STOP_SIGNAL,
    stopTimeoutMs: s.stop_timeout ?? d.DEFAULT_STOP_TIMEOUT_MS,
    standbyMs: s.standby ?? d.DEFAULT_STANDBY_MS,
    balance: s.balance ?? d.DEFAULT_BALANCE,
    upstream: upstream(s),
    keepReleases: s.keep_releases ?? d.DEFAULT_KEEP_RELEASES,
    git: s.git ? { repo: resolveRepo(s.git.repo, base), branch: s.git.branch ?? d.DEFAULT_GIT_BRANCH } : null,
    shared: [...new Set(s.shared ?? [])],
    hooks: {
      build: hook(s.hooks?.build, 'build'),
      migrate: hook(s.hooks?.migrate, 'migrate'),
      smoke: hook(s.hooks?.smoke, 'smoke'),
      afterSwitch: hook(s.hooks?.after_switch, 'after_switch'),
    },
    strategy: s.strategy ?? d.DEFAULT_STRATEGY,
    canary: canary(s.canary ?? null),
    maintenance: {
      pageFile: s.maintenance?.page === undefined ? null : resolve(base, s.maintenance.page),
      retryAfterSeconds: Math.ceil((s.maintenance?.retry_after ?? d.DEFAULT_MAINTENANCE_RETRY_AFTER_MS) / 1000),
      allow: s.maintenance?.allow ?? [],
    },
    pause: {
      maxQueued: s.pause?.max_queued ?? d.DEFAULT_PAUSE_MAX_QUEUED,
      maxWaitMs: s.pause?.max_wait ?? d.DEFAULT_PAUSE_MAX_WAIT_MS,
    },
    limits: limits(s),
  };
}

function limits(s: RawService): ServiceConfig['limits'] {
  return {
    // No default: baton streams bodies with backpressure, so a body's size costs it no memory (as Caddy, Traefik, HAProxy, kamal-proxy).
    maxBodyBytes: s.limits?.max_body_size ?? null,
    // No default cap: a long poll or a server-sent event stream is a request in flight for its whole life.
    maxInflight: s.limits?.max_inflight ?? null,
    maxQueued: s.limits?.max_queued ?? d.DEFAULT_LIMITS_MAX_QUEUED,
    queueTimeoutMs: s.limits?.queue_timeout ?? d.DEFAULT_LIMITS_QUEUE_TIMEOUT_MS,
  };
}

/** A service with every default, as a config file naming only its command would give (tests, tools). */
export function defaultService(name: string, command: string): ServiceConfig {
  return service(name, { command } as RawService, true, '/');
}

/** proxy.access_log: a relative path is the config file's directory's; "stdout" is the daemon's log stream. */
function normaliseAccessLog(raw: RawAccessLog | undefined, base: string): ProxyConfig['accessLog'] {
  if (raw === undefined) return null;
  return {
    path: raw.path === 'stdout' ? 'stdout' : resolve(base, raw.path),
    maxBytes: raw.max_size ?? d.DEFAULT_LOG_MAX_BYTES,
    keep: raw.keep ?? d.DEFAULT_LOG_KEEP,
  };
}
