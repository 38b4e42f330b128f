// What a config reload changes, computed before anything is touched (pure),
// and when each changed setting takes effect. The tables below name every
// setting: a new key in DaemonConfig or ServiceConfig does not compile until
// it says when a reload applies it, so `baton reload` never claims more than
// the daemon does.

import { isDeepStrictEqual } from 'node:util';
import type { CanaryConfig, DaemonConfig, DashboardConfig, FrontServiceConfig, HealthConfig, MaintenanceConfig, ProxyConfig, ServiceConfig, TargetCheckConfig } from '../config/types.ts';
import { FrontService } from '../front/front-service.ts';
import { BatonError, errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { formatDuration } from '../core/time.ts';
import type { ServiceRuntime } from '../deploy/service-runtime.ts';
import type { Proxy, RequestLimits } from '../proxy/index.ts';
import type { ReloadResult } from '../control/protocol.ts';
import { WorkerProxy } from './workers.ts';

/** When a changed setting takes effect. */
export type Effect =
  /** The reload applies it to what is running (routing, listeners, timeouts). */
  | 'now'
  /** As 'now', and the running instances follow it too (health checks, how they are stopped). */
  | 'now_running'
  /** Read when a deployment starts: the next deploy (or rollback, restart) uses it. */
  | 'next_deploy'
  /** Given to a process when it starts: running instances keep the old value until replaced. */
  | 'next_start'
  /** Read when a release becomes the warm standby. */
  | 'next_standby'
  /** Read when an instance starts draining: drains already under way keep their deadline. */
  | 'next_drain'
  /** Read when a request is held (pause): requests already held keep their deadline. */
  | 'next_hold'
  /** Read when maintenance mode is turned on. */
  | 'next_maintenance'
  /** Read when a client connection is accepted: connections already open keep the old value. */
  | 'next_connection'
  /** A running daemon cannot change it: the reload is refused. */
  | 'restart';

const WHEN: Record<Exclude<Effect, 'restart'>, string> = {
  now: 'applies now',
  now_running: 'applies now, to the running instances too',
  next_deploy: 'applies from the next deploy',
  next_start: 'applies on the next deploy or restart; running instances keep the old value',
  next_standby: 'applies to the next warm standby; a standby running now keeps its deadline',
  next_drain: 'applies to drains that start from now on',
  next_hold: 'applies now; requests already held keep their deadline',
  next_maintenance: 'applies the next time maintenance mode is turned on',
  next_connection: 'applies to client connections accepted from now on; open ones keep the old value',
};

/** A setting: its name in the YAML file and when a change to it applies; or a table of its parts. */
type Rule<T> = readonly [yaml: string, effect: Effect] | readonly [yaml: string, parts: Rules<T>];
type Rules<T> = { readonly [K in keyof T]-?: Rule<T[K]> };

const HEALTH: Rules<HealthConfig> = {
  path: ['path', 'now_running'],
  intervalMs: ['interval', 'now_running'],
  timeoutMs: ['timeout', 'now_running'],
  healthyThreshold: ['healthy_threshold', 'now_running'],
  unhealthyThreshold: ['unhealthy_threshold', 'now_running'],
  // How long a deployment waits for its new instances.
  startTimeoutMs: ['start_timeout', 'next_deploy'],
};

const CANARY: Rules<CanaryConfig> = {
  // A rollout in progress keeps the plan it started with.
  steps: ['steps', 'next_deploy'],
  analysis: ['analysis', 'next_deploy'],
  // Part of the routing snapshot: a running canary's split follows at once.
  sticky: ['sticky', 'now'],
  beta: ['beta', 'now'],
};

const MAINTENANCE: Rules<MaintenanceConfig> = {
  pageFile: ['page', 'next_maintenance'],
  retryAfterSeconds: ['retry_after', 'now'],
  allow: ['allow', 'now'],
};

const SERVICE: Rules<Omit<ServiceConfig, 'name'>> = {
  hosts: ['hosts', 'now'],
  isDefault: ['default', 'now'],
  command: ['command', 'next_start'],
  env: ['env', 'next_start'],
  runAs: ['user', 'next_start'],
  // The log writer is started with the instance.
  logs: ['logs', 'next_start'],
  publicUrl: ['public_url', 'now'],
  instances: ['instances', 'now'],
  health: ['health', HEALTH],
  drainTimeoutMs: ['drain_timeout', 'next_drain'],
  wsCloseSpreadMs: ['ws_close_spread', 'next_drain'],
  stopSignal: ['stop_signal', 'now_running'],
  stopTimeoutMs: ['stop_timeout', 'now_running'],
  standbyMs: ['standby', 'next_standby'],
  balance: ['balance', 'now'],
  // New connection pools to the instances, at once.
  upstream: ['upstream', 'now'],
  keepReleases: ['keep_releases', 'next_deploy'],
  git: ['git', 'next_deploy'],
  shared: ['shared', 'next_deploy'],
  hooks: ['hooks', 'next_deploy'],
  strategy: ['strategy', 'next_deploy'],
  canary: ['canary', CANARY],
  maintenance: ['maintenance', MAINTENANCE],
  pause: ['pause', 'next_hold'],
  // Part of the routing snapshot: checked for each request from now on.
  limits: ['limits', 'now'],
};

const TARGET_CHECK: Rules<TargetCheckConfig> = {
  path: ['path', 'now'],
  intervalMs: ['interval', 'now'],
  timeoutMs: ['timeout', 'now'],
  healthyThreshold: ['healthy_threshold', 'now'],
  unhealthyThreshold: ['unhealthy_threshold', 'now'],
};

/** A front service (one with `targets`): every setting is routing or checking, applied at once. */
const FRONT: Rules<Omit<FrontServiceConfig, 'name' | 'targets'>> = {
  hosts: ['hosts', 'now'],
  isDefault: ['default', 'now'],
  health: ['health', TARGET_CHECK],
  balance: ['balance', 'now'],
  upstream: ['upstream', 'now'],
  drainTimeoutMs: ['drain_timeout', 'next_drain'],
  wsCloseSpreadMs: ['ws_close_spread', 'next_drain'],
  limits: ['limits', 'now'],
};

const PROXY: Rules<ProxyConfig> = {
  clientIdleTimeoutMs: ['client_idle_timeout', 'now'],
  headersTimeoutMs: ['headers_timeout', 'now'],
  trustedProxies: ['trusted_proxies', 'now'],
  // The HTTP/1.1 parser takes its bound when a connection is accepted.
  maxHeaderSize: ['max_header_size', 'next_connection'],
  // Checked on every request.
  maxHeaders: ['max_headers', 'now'],
  maxUrlLength: ['max_url_length', 'now'],
  // Counted when a connection is accepted: open connections over a lowered cap stay.
  maxConnectionsPerClient: ['max_connections_per_client', 'next_connection'],
  // The worker processes are spawned with the listeners at start.
  workers: ['workers', 'restart'],
  // Chosen when the listeners are opened.
  http1FastPath: ['http1_fast_path', 'restart'],
  // Opened again by every reload (changed or not), so an outside rotation is followed.
  accessLog: ['access_log', 'now'],
};

const DASHBOARD: Rules<DashboardConfig> = {
  listener: ['listen', 'restart'],
  // Read on every request.
  sessionTimeoutMs: ['session_timeout', 'now'],
};

const DAEMON: Rules<Omit<DaemonConfig, 'file' | 'services' | 'fronts'>> = {
  listeners: ['listen', 'restart'],
  stateDir: ['state_dir', 'restart'],
  controlSocket: ['control_socket', 'restart'],
  control: ['control', 'restart'],
  // Replaced certificate files are watched and picked up by themselves; which files and listeners is start-up state.
  tls: ['tls', 'restart'],
  dashboard: ['dashboard', DASHBOARD],
  agentCheckListener: ['agent_check', 'restart'],
  logLevel: ['log_level', 'now'],
  metricsListener: ['metrics_listen', 'now'],
  // Open client connections follow from their next request or idle period.
  proxy: ['proxy', PROXY],
};

/** The proxy's bounds of a request head, from `proxy:` in the config. */
export function requestLimits(p: ProxyConfig): RequestLimits {
  return { maxHeaderSize: p.maxHeaderSize, maxHeaders: p.maxHeaders, maxUrlLength: p.maxUrlLength };
}

export interface SettingChange {
  /** The YAML path, e.g. services.web.stop_signal. */
  key: string;
  effect: Effect;
  /** One line for the operator: what changed and when it applies. */
  line: string;
}

export interface ReloadPlan {
  /** Every changed setting, in file order. */
  settings: SettingChange[];
  /** Human lines describing what changes and when (what `baton reload` prints). */
  changes: string[];
  /** Changes a running daemon cannot apply: the reload is refused as a whole. */
  refused: string[];
  removedServices: string[];
  addedServices: string[];
  /** Services (present before and after) with at least one changed setting. */
  changedServices: string[];
  logLevelChanged: boolean;
  metricsChanged: boolean;
  proxyChanged: boolean;
}

/** What the daemon is doing that a reload must respect: service → its deployment in progress. */
export interface ReloadContext {
  deploying: ReadonlyMap<string, number>;
}

export function diffConfig(prev: DaemonConfig, next: DaemonConfig, ctx: ReloadContext = { deploying: new Map() }): ReloadPlan {
  const settings: SettingChange[] = [];
  const refused: string[] = [];
  compare(DAEMON, prev, next, '', settings);

  const before = new Map(prev.services.map((s) => [s.name, s]));
  const after = new Map(next.services.map((s) => [s.name, s]));
  const removedServices: string[] = [];
  const addedServices: string[] = [];
  const changedServices: string[] = [];
  const extra: string[] = [];
  for (const name of before.keys()) {
    if (after.has(name)) continue;
    const dep = ctx.deploying.get(name);
    if (dep !== undefined) refused.push(`services.${name}: removed while deployment #${dep} runs; reload again when it is done`);
    removedServices.push(name);
    extra.push(`services.${name}: removed (its instances are drained and stopped now)`);
  }
  for (const [name, s] of after) {
    const old = before.get(name);
    if (!old) {
      addedServices.push(name);
      extra.push(`services.${name}: added (deploy a release to start it)`);
      continue;
    }
    const mine: SettingChange[] = [];
    compare(SERVICE, old, s, `services.${name}.`, mine);
    if (mine.length === 0) continue;
    changedServices.push(name);
    settings.push(...mine);
    const dep = ctx.deploying.get(name);
    if (dep === undefined) continue;
    // The deployment sized its new group from the old count and owns the groups until it ends.
    if (old.instances !== s.instances) refused.push(`services.${name}.instances: changed while deployment #${dep} runs; reload again when it is done`);
    if (mine.some((c) => c.effect !== 'now' && c.effect !== 'now_running' && c.effect !== 'next_hold')) extra.push(`services.${name}: deployment #${dep} in progress keeps the settings it started with`);
  }
  const frontsBefore = new Map(prev.fronts.map((f) => [f.name, f]));
  for (const f of next.fronts) {
    const old = frontsBefore.get(f.name);
    if (old === undefined) {
      // A name that was a supervised service is reported removed above, and its instances go.
      extra.push(`services.${f.name}: added, a front service (its targets are checked now and routed once they answer)`);
      continue;
    }
    compare(FRONT, old, f, `services.${f.name}.`, settings);
    settings.push(...targetChanges(old, f));
  }
  const frontNames = new Set(next.fronts.map((f) => f.name));
  for (const f of prev.fronts) if (!frontNames.has(f.name)) extra.push(`services.${f.name}: removed, a front service (its targets get no new request; what runs finishes)`);

  for (const c of settings) if (c.effect === 'restart') refused.push(`${c.line}; only a daemon restart applies it${c.key === 'tls' || c.key.startsWith('tls.') ? ' (replaced certificate files are picked up without one)' : ''}`);

  const changed = (key: string): boolean => settings.some((c) => c.key === key || c.key.startsWith(`${key}.`));
  return {
    settings,
    changes: [...settings.filter((c) => c.effect !== 'restart').map((c) => c.line), ...extra],
    refused,
    removedServices,
    addedServices,
    changedServices,
    logLevelChanged: changed('log_level'),
    metricsChanged: changed('metrics_listen'),
    proxyChanged: changed('proxy'),
  };
}

/** The parts of the daemon a reload changes. */
export interface Reloadable {
  config: DaemonConfig;
  readonly proxy: Proxy;
  readonly logger: Logger;
  readonly runtimes: Map<string, ServiceRuntime>;
  newRuntime(config: ServiceConfig): ServiceRuntime;
  readonly fronts: Map<string, FrontService>;
  newFront(config: FrontServiceConfig): FrontService;
  /** A front target out of the snapshot for good: drain it (bounded), then close its pool. */
  retireTarget(id: string, drainMs: number): void;
  /** Swap in a routing snapshot built from every service's runtime. */
  publish(): void;
}

/**
 * Apply `next` to the running daemon, or change nothing: refused changes and a
 * metrics listener that cannot be bound fail before anything is touched.
 * Every line returned says when its setting takes effect.
 */
export async function applyReload(d: Reloadable, next: DaemonConfig): Promise<ReloadResult> {
  const deploying = new Map<string, number>();
  for (const [name, rt] of d.runtimes) if (rt.activeDeployment !== null) deploying.set(name, rt.activeDeployment);
  const plan = diffConfig(d.config, next, { deploying });
  if (plan.refused.length) {
    throw new BatonError('CONFIG_INVALID', `${d.config.file}: cannot apply without a restart or while deploying`, plan.refused);
  }
  // The steps that can fail; done first so a failure changes nothing. The
  // access log is reopened on every reload (a file an outside rotation moved away is created again).
  await d.proxy.setAccessLog(next.proxy.accessLog);
  if (plan.metricsChanged) {
    try {
      const m = await d.proxy.moveMetrics(next.metricsListener);
      d.logger.info(m ? 'metrics listening' : 'metrics listener closed', m ? { host: m.host, port: m.port, path: '/metrics' } : {});
    } catch (err) {
      await d.proxy.setAccessLog(d.config.proxy.accessLog).catch(() => {});
      throw err;
    }
  }
  d.config = next;
  if (plan.logLevelChanged) {
    d.logger.setLevel(next.logLevel);
    // Proxy workers are processes of their own: they are told.
    if (d.proxy instanceof WorkerProxy) d.proxy.setLogLevel(next.logLevel);
  }
  if (plan.proxyChanged) {
    d.proxy.setClientTimeouts(next.proxy);
    d.proxy.setTrustedProxies(next.proxy.trustedProxies);
    d.proxy.setRequestLimits(requestLimits(next.proxy));
    d.proxy.setMaxConnectionsPerClient(next.proxy.maxConnectionsPerClient);
  }
  const byName = new Map(next.services.map((s) => [s.name, s]));
  for (const [name, rt] of d.runtimes) {
    const cfg = byName.get(name);
    if (cfg) {
      rt.setConfig(cfg);
    } else {
      d.runtimes.delete(name);
      void rt.shutdown().catch((err) => d.logger.error('stopping removed service failed', { service: name, error: errorMessage(err) }));
    }
  }
  for (const name of plan.addedServices) d.runtimes.set(name, d.newRuntime(byName.get(name)!));
  const retired: { id: string; drainMs: number }[] = [];
  const frontsByName = new Map(next.fronts.map((f) => [f.name, f]));
  for (const [name, f] of d.fronts) {
    const cfg = frontsByName.get(name);
    if (cfg) {
      for (const id of f.setConfig(cfg)) retired.push({ id, drainMs: cfg.drainTimeoutMs });
    } else {
      d.fronts.delete(name);
      f.stop();
      for (const t of f.config.targets) retired.push({ id: FrontService.targetId(name, t.name), drainMs: f.config.drainTimeoutMs });
    }
  }
  for (const cfg of next.fronts) {
    if (d.fronts.has(cfg.name)) continue;
    const f = d.newFront(cfg);
    d.fronts.set(cfg.name, f);
    void f.start(); // its checks log their own failures (FrontService.#checkLogged)
  }
  d.publish();
  for (const r of retired) d.retireTarget(r.id, r.drainMs);
  for (const rt of d.runtimes.values()) {
    if (rt.current && rt.activeDeployment === null) {
      void rt.scale(rt.current).catch((err) => d.logger.error('scaling failed', { service: rt.name, error: errorMessage(err) }));
    }
  }
  d.logger.info('configuration reloaded', { config: next.file, changes: plan.changes });
  return { config: next.file, changes: plan.changes };
}

/** A front service's targets, one line per target added, removed or changed (all apply now). */
function targetChanges(prev: FrontServiceConfig, next: FrontServiceConfig): SettingChange[] {
  const out: SettingChange[] = [];
  const before = new Map(prev.targets.map((t) => [t.name, t]));
  const addr = (x: { host: string; port: number }): string => `${x.host}:${x.port}`;
  for (const t of next.targets) {
    const key = `services.${next.name}.targets.${t.name}`;
    const o = before.get(t.name);
    before.delete(t.name);
    if (o === undefined) {
      out.push({ key, effect: 'now', line: `${key}: added ${addr(t)} (checked now, routed once it answers)` });
      continue;
    }
    const parts: string[] = [];
    if (addr(o) !== addr(t)) parts.push(`address ${addr(o)} → ${addr(t)}`);
    if (o.weight !== t.weight) parts.push(`weight ${o.weight} → ${t.weight}`);
    if ((o.agent && addr(o.agent)) !== (t.agent && addr(t.agent))) parts.push(`agent ${o.agent ? addr(o.agent) : '(none)'} → ${t.agent ? addr(t.agent) : '(none)'}`);
    if (parts.length > 0) out.push({ key, effect: 'now', line: `${key}: ${parts.join(', ')} (${WHEN.now})` });
  }
  for (const o of before.values()) {
    const key = `services.${next.name}.targets.${o.name}`;
    out.push({ key, effect: 'now', line: `${key}: removed (no new request; what it runs finishes within drain_timeout)` });
  }
  return out;
}

function compare<T>(rules: Rules<T>, prev: T, next: T, prefix: string, out: SettingChange[]): void {
  for (const field of Object.keys(rules) as (keyof T)[]) {
    const rule = rules[field] as Rule<T[keyof T]>;
    const a = prev[field];
    const b = next[field];
    if (isDeepStrictEqual(a, b)) continue;
    const [yaml, how] = rule;
    const key = prefix + yaml;
    if (typeof how === 'object' && isRecord(a) && isRecord(b)) {
      compare(how as Rules<T[keyof T]>, a, b, `${key}.`, out);
      continue;
    }
    // A whole section that appears or goes away: the strictest effect of its parts.
    const effect = typeof how === 'string' ? how : strictest(how);
    const what = isRecord(a) && isRecord(b) && !isAddress(a) ? 'changed' : `${show(String(field), a)} → ${show(String(field), b)}`;
    out.push({ key, effect, line: effect === 'restart' ? `${key}: ${what}` : `${key}: ${what} (${WHEN[effect]})` });
  }
}

const ORDER: Effect[] = ['now', 'now_running', 'next_hold', 'next_drain', 'next_standby', 'next_maintenance', 'next_deploy', 'next_start', 'restart'];

function strictest(rules: object): Effect {
  let worst: Effect = 'now';
  for (const [, how] of Object.values(rules) as (readonly [string, Effect | object])[]) {
    const e = typeof how === 'string' ? how : strictest(how);
    if (ORDER.indexOf(e) > ORDER.indexOf(worst)) worst = e;
  }
  return worst;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isAddress(v: unknown): v is { host: string; port: number } {
  return isRecord(v) && typeof v['host'] === 'string' && typeof v['port'] === 'number';
}

/** A value as the operator wrote it: durations as durations, addresses as host:port, the rest summarised. */
function show(field: string, v: unknown): string {
  if (v === null || v === undefined) return '(none)';
  if (typeof v === 'number' && field.endsWith('Ms')) return formatDuration(v);
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return JSON.stringify(v);
  if (isAddress(v)) return `${v.host}:${v.port}`;
  if (Array.isArray(v)) {
    if (v.length <= 4 && v.every((x) => typeof x === 'string' || typeof x === 'number' || isAddress(x))) return `[${v.map((x) => (isAddress(x) ? `${x.host}:${x.port}` : String(x))).join(', ')}]`;
    return `${v.length} item(s)`;
  }
  return '{…}';
}
