// The operator's web dashboard: loaded by the daemon (dynamic import) only when
// `dashboard:` is configured, so a daemon without it carries none of this.

export { Dashboard, type DashboardHost, type DashboardOptions } from './server.ts';
export { DEFAULT_LOGIN_TTL_MS, MAX_LOGIN_TTL_MS } from './auth.ts';
