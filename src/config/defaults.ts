// Default values of every optional setting, shared by the config loader, the
// CLI and docs/config.md. Durations are in milliseconds.

import type { BalancePolicy, StopSignal } from './types.ts';

export const DEFAULT_LISTEN = ['127.0.0.1:8080'] as const;
export const DEFAULT_STATE_DIR = './state';
/** The control socket's file name inside state_dir, unless control_socket says otherwise. */
export const DEFAULT_CONTROL_SOCKET_NAME = 'baton.sock';
export const DEFAULT_LOG_LEVEL = 'info';

export const DEFAULT_DASHBOARD_SESSION_TIMEOUT_MS = 12 * 3600_000;

export const DEFAULT_CLIENT_IDLE_TIMEOUT_MS = 60_000;
export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
/** The request line and header fields together (Node's parser default, HAProxy's tune.bufsize): 431 beyond. */
export const DEFAULT_MAX_HEADER_SIZE = 16 * 1024;
/** Header fields in one request (Apache's LimitRequestFields, HAProxy's tune.http.maxhdr 101): 431 beyond. */
export const DEFAULT_MAX_HEADERS = 100;
/** The request target (nginx's large_client_header_buffers buffer, Apache's LimitRequestLine): 414 beyond. */
export const DEFAULT_MAX_URL_LENGTH = 8 * 1024;

export const DEFAULT_ACME_DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';
export const DEFAULT_TLS_HTTP2 = true;
export const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_CONCURRENT_STREAMS = 100;
export const DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 256;

export const DEFAULT_INSTANCES = 1;
/** Instance logs: rotated at this size, this many older files kept. */
export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;
export const DEFAULT_LOG_KEEP = 5;
export const MAX_INSTANCES = 64;
export const DEFAULT_HEALTH_PATH = '/';
export const DEFAULT_HEALTH_INTERVAL_MS = 1_000;
export const DEFAULT_HEALTH_TIMEOUT_MS = 2_000;
export const DEFAULT_HEALTHY_THRESHOLD = 1;
export const DEFAULT_UNHEALTHY_THRESHOLD = 3;
export const DEFAULT_START_TIMEOUT_MS = 30_000;
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
/** WebSockets still open near the drain deadline are closed one by one over this last part of it. */
export const DEFAULT_WS_CLOSE_SPREAD_MS = 10_000;
export const DEFAULT_STOP_SIGNAL: StopSignal = 'SIGTERM';
export const DEFAULT_STOP_TIMEOUT_MS = 10_000;
export const DEFAULT_STANDBY_MS = 5 * 60_000;
export const DEFAULT_BALANCE: BalancePolicy = 'least_outstanding';
export const DEFAULT_KEEP_RELEASES = 5;

// Below the keep-alive timeouts of common app servers (gunicorn 2s, Node 5s),
// so baton closes an idle pooled connection before the app does.
export const DEFAULT_UPSTREAM_KEEPALIVE_TIMEOUT_MS = 1_000;
export const DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS = 2_000;
export const DEFAULT_UPSTREAM_RESPONSE_TIMEOUT_MS = 60_000;

/** A front service checks each target's readiness URL: 503 while that host is drained (`baton drain`). */
export const DEFAULT_TARGET_HEALTH_PATH = '/_baton/health';
export const DEFAULT_TARGET_HEALTHY_THRESHOLD = 2;
export const DEFAULT_TARGET_UNHEALTHY_THRESHOLD = 2;
export const DEFAULT_TARGET_WEIGHT = 1;
export const MAX_TARGET_WEIGHT = 256;
/** The keys a front service (one with `targets:`) reads; the others are about processes it does not run. */
export const FRONT_SERVICE_KEYS = ['hosts', 'default', 'targets', 'health', 'balance', 'upstream', 'drain_timeout', 'ws_close_spread', 'limits'] as const;

export const DEFAULT_GIT_BRANCH = 'main';
/** How long each hook may run before it is killed (and the deploy aborted). */
export const DEFAULT_HOOK_TIMEOUT_MS = {
  build: 10 * 60_000,
  migrate: 10 * 60_000,
  smoke: 2 * 60_000,
  after_switch: 2 * 60_000,
} as const;

export const STRATEGIES = ['blue_green', 'canary'] as const;
export const DEFAULT_STRATEGY = 'blue_green';
/** 10% with analysis, 50% with analysis, then all. */
export const DEFAULT_CANARY_STEPS = [{ weight: 10 }, { analysisMs: null }, { weight: 50 }, { analysisMs: null }, { weight: 100 }] as const;
export const DEFAULT_ANALYSIS_WINDOW_MS = 60_000;
export const DEFAULT_ANALYSIS_MIN_REQUESTS = 100;
export const DEFAULT_MAX_ERROR_RATE = 0.01;
export const DEFAULT_MAX_CONNECTION_ERROR_RATE = 0.01;
export const DEFAULT_MAX_P99_RATIO = 1.5;
export const DEFAULT_P99_FLOOR_MS = 50;
export const DEFAULT_CHECK_TIMEOUT_MS = 60_000;
export const DEFAULT_STICKY_COOKIE = 'baton_bucket';
export const DEFAULT_BETA_COOKIE = 'baton_beta';
export const DEFAULT_MAINTENANCE_RETRY_AFTER_MS = 30_000;
export const DEFAULT_PAUSE_MAX_QUEUED = 1000;
export const DEFAULT_PAUSE_MAX_WAIT_MS = 30_000;
/** The queue in front of limits.max_inflight: short, so a client hears "busy" in seconds, not at its own timeout. */
export const DEFAULT_LIMITS_MAX_QUEUED = 100;
export const DEFAULT_LIMITS_QUEUE_TIMEOUT_MS = 5_000;

export const STOP_SIGNALS: readonly StopSignal[] = [
  'SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGWINCH', 'SIGUSR1', 'SIGUSR2', 'SIGHUP', 'SIGKILL',
];
export const BALANCE_POLICIES: readonly BalancePolicy[] = ['least_outstanding', 'round_robin'];
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/** ACME challenge types baton answers (tls.acme.challenge); the first is the default. */
export const ACME_CHALLENGES = ['http-01', 'tls-alpn-01'] as const;
