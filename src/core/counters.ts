// A service's traffic counters: kept by the proxy, reported by the control API
// and printed by the CLI. Types only, so every layer may import them.

/** Counters of one service, since the daemon started. Monotonic. */
export interface ServiceCounters {
  requests: number; // client HTTP requests that completed (response finished or failed)
  /** Of those: baton's own failures (no instance, 502/504 after connection errors or timeouts, a response cut midway, a pause that overflowed or expired). Not the maintenance page: that answer is on purpose. */
  failed: number;
  /** Of those: answered with a 5xx status by an instance (the app's errors, not baton's). */
  appErrors: number;
  retries: number; // requests re-sent to another (or the same) instance under the retry rules
  websockets: number; // WebSocket upgrades accepted, total
}
