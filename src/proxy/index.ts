// Public surface of baton's reverse proxy: the Proxy class and its contract types.

export { Proxy, WEBSOCKET_CLOSE_GRACE_MS, type ListenerSpec, type ProxyOptions, type ProxySettings } from './proxy.ts';
export { makeBetaToken } from './sticky.ts';
export { LATENCY_BUCKETS_MS } from './metrics.ts';
export { HEALTH_PATH, BETA_PATH } from './dispatch.ts';
export type { ProxyErrorCode } from './error-page.ts';
export type { RequestLimits } from './limits.ts';
export type { AccessLogConfig, AccessLogStats } from './access-log.ts';
export type {
  BetaTokenLedger,
  CanarySpec,
  DrainResult,
  MaintenanceSpec,
  OverrideSpec,
  PauseSpec,
  ProxySpec,
  ReleaseMetrics,
  RoutingCounters,
  ServiceCounters,
  ServiceRouteSpec,
  StickySpec,
  TargetStats,
  UpstreamTarget,
} from './types.ts';
