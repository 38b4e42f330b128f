// A service's traffic counters: kept by the proxy, reported by the control API
// and printed by the CLI. Types only, so every layer may import them.

/** Counters of one service, since the daemon started. Monotonic. */
export interface ServiceCounters {
  requests: number; // client requests that completed (response finished or failed)
  failed: number; // of those: answered by baton with 5xx, or cut before the response completed
  retries: number; // requests re-sent to another (or the same) instance under the retry rules
  websockets: number; // WebSocket upgrades accepted, total
}
