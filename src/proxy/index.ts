// Public surface of baton's reverse proxy: the Proxy class and its contract types.

export { Proxy, WEBSOCKET_CLOSE_GRACE_MS, type ProxyOptions } from './proxy.ts';
export type { ProxyErrorCode } from './error-page.ts';
export type {
  DrainResult,
  ProxySpec,
  ServiceCounters,
  ServiceRouteSpec,
  TargetStats,
  UpstreamTarget,
} from './types.ts';
