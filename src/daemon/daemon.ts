// The composition root: the one place that wires config, store, proxy,
// supervisor, deployer and control API together, recovers state after a
// restart, and reloads the configuration.

import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { loadConfigIsolated as loadConfig } from '../config/isolated.ts';
import type { DaemonConfig, ServiceConfig } from '../config/types.ts';
import { BatonError, errorMessage } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { VERSION } from '../core/version.ts';
import { Deployer, type DeployEvent, type DeployOutcome } from '../deploy/deployer.ts';
import { ReleaseSources } from '../deploy/sources.ts';
import { ServiceRuntime, type RuntimeHost } from '../deploy/service-runtime.ts';
import { resolveInterrupted } from '../deploy/states.ts';
import { describeStep } from '../deploy/canary.ts';
import { p99FromHistogram } from '../deploy/analysis.ts';
import { BETA_PATH, Proxy, makeBetaToken } from '../proxy/index.ts';
import type { ProxySpec } from '../proxy/types.ts';
import { Store } from '../store/index.ts';
import { TlsFrontDoor } from '../tls/index.ts';
import { killStrayGroup } from '../supervisor/index.ts';
import type { DeploySource, DeploymentInfo, InstanceStatus, ReleaseInfo, ReloadResult, ServiceStatus, StatusResponse } from '../control/protocol.ts';
import { ControlServer } from '../control/server.ts';
import { AuditLog } from '../control/audit.ts';
import { readControlKeyPair, readControlToken } from '../control/remote-secrets.ts';
import type { Dashboard } from '../dashboard/index.ts';
import { applyReload } from './reload.ts';
import { loadSecret, storedBetaTokens } from './secret.ts';
import { maintenancePage, routeSpec } from './traffic.ts';
import { HostDrain, type DrainMode, type HostDrainState } from './agent-check.ts';

export interface DaemonOptions {
  configFile: string;
  logger?: Logger;
}

export class Daemon implements RuntimeHost {
  config: DaemonConfig;
  readonly store: Store;
  readonly proxy: Proxy;
  readonly logger: Logger;
  readonly stateDir: string;
  readonly runtimes = new Map<string, ServiceRuntime>();
  readonly deployer: Deployer;
  readonly startedAt = Date.now();
  listeners: { host: string; port: number }[] = [];
  /** HTTPS listeners, certificates and ACME; null without `tls:`. */
  tls: TlsFrontDoor | null = null;
  #control: ControlServer | null = null;
  #dashboard: Dashboard | null = null;
  #secret = '';
  readonly hostDrain: HostDrain;
  readonly #sources: ReleaseSources;
  #stopping: Promise<void> | null = null;
  #resolveStopped!: () => void;
  /** Settles once the daemon has stopped (by stop(), from a signal or the control API). */
  readonly stopped: Promise<void> = new Promise((r) => (this.#resolveStopped = r));

  private constructor(config: DaemonConfig, store: Store, logger: Logger) {
    this.config = config;
    this.store = store;
    this.logger = logger;
    this.stateDir = config.stateDir;
    this.proxy = new Proxy({
      logger: logger.child({ component: 'proxy' }),
      clientIdleTimeoutMs: config.proxy.clientIdleTimeoutMs,
      headersTimeoutMs: config.proxy.headersTimeoutMs,
      betaTokens: storedBetaTokens(store, logger),
      trustedProxies: config.proxy.trustedProxies,
    });
    this.hostDrain = new HostDrain(config.stateDir, logger.child({ component: 'agent-check' }), (s) => this.proxy.setHostHealth(s.mode === 'ready'));
    this.#sources = new ReleaseSources({ store, stateDir: config.stateDir, configFile: () => this.config.file });
    this.deployer = new Deployer({ store, proxy: this.proxy, logger, stateDir: config.stateDir, routingChanged: () => this.routingChanged() });
  }

  static async start(opts: DaemonOptions): Promise<Daemon> {
    const config = await loadConfig(opts.configFile);
    const logger = opts.logger ?? createLogger(config.logLevel);
    await mkdir(config.stateDir, { recursive: true });
    await ControlServer.assertNoOtherDaemon(config.controlSocket);
    const store = Store.open(path.join(config.stateDir, 'baton.db'));
    const d = new Daemon(config, store, logger);
    try {
      d.#secret = await loadSecret(config.stateDir);
      for (const svc of config.services) d.runtimes.set(svc.name, new ServiceRuntime(svc, d));
      await d.#restoreModes();
      await d.#recover();
      d.listeners = await d.proxy.listen(config.listeners);
      if (config.tls) d.tls = await TlsFrontDoor.start({ proxy: d.proxy, config: config.tls, stateDir: config.stateDir, logger });
      if (config.metricsListener) {
        const m = await d.proxy.listenMetrics(config.metricsListener.host, config.metricsListener.port);
        logger.info('metrics listening', { host: m.host, port: m.port, path: '/metrics' });
      }
      if (config.dashboard) {
        // Loaded only when configured: a daemon without a dashboard keeps none of its code in memory.
        const { Dashboard } = await import('../dashboard/index.ts');
        d.#dashboard = await Dashboard.start({
          host: d,
          metrics: (service) => d.proxy.releaseMetrics(service),
          listener: config.dashboard.listener,
          sessionTimeoutMs: () => d.config.dashboard?.sessionTimeoutMs ?? 0,
          logger: logger.child({ component: 'dashboard' }),
        });
        logger.info('dashboard listening', { host: d.#dashboard.address.host, port: d.#dashboard.address.port, login: '`baton dashboard` prints a one-time link' });
      }
      if (config.agentCheckListener) await d.hostDrain.listen(config.agentCheckListener.host, config.agentCheckListener.port);
      d.#control = new ControlServer(d, logger.child({ component: 'control' }), new AuditLog(path.join(config.stateDir, 'audit.log'), logger));
      await d.#control.listen(config.controlSocket, config.control);
      const remote = config.control.remote;
      if (remote) {
        const pair = await readControlKeyPair(remote.certFile, remote.keyFile);
        const token = await readControlToken(remote.tokenFile);
        await d.#control.listenRemote({ host: remote.listener.host, port: remote.listener.port, ...pair, token });
      }
    } catch (err) {
      await d.#teardown(false).catch(() => {});
      throw err;
    }
    logger.info('baton daemon ready', {
      version: VERSION,
      pid: process.pid,
      config: config.file,
      listen: d.listeners.map((l) => `${l.host}:${l.port}`),
      ...(d.tls ? { listenTls: d.tls.listeners.map((l) => `${l.host}:${l.port}`) } : {}),
      control: config.controlSocket,
    });
    return d;
  }

  // ---- routing -----------------------------------------------------------

  routingChanged(): void {
    const spec: ProxySpec = { services: [...this.runtimes.values()].map((rt) => routeSpec(rt, this.#secret)) };
    this.proxy.apply(spec);
  }

  runtime(name: string): ServiceRuntime {
    const rt = this.runtimes.get(name);
    if (!rt) {
      const known = [...this.runtimes.keys()].join(', ') || '(none)';
      throw new BatonError('SERVICE_UNKNOWN', `no service named "${name}" in ${this.config.file} (services: ${known})`);
    }
    return rt;
  }

  // ---- recovery after a restart -------------------------------------------

  /**
   * Rebuild the live state from the store: resolve interrupted deployments,
   * re-adopt instances that are still the same processes, stop strays, start
   * what is missing. See resolveInterrupted() for why each case ends as it does.
   */
  async #recover(): Promise<void> {
    const { store, logger } = this;
    for (const dep of store.activeDeployments()) {
      const svc = store.getService(dep.service);
      const outcome = resolveInterrupted(dep.state, svc?.currentRelease ?? null, dep.toRelease);
      store.updateDeployment(dep.id, {
        state: outcome,
        finishedAt: Date.now(),
        error: outcome === 'failed' ? `interrupted by a daemon restart while ${dep.state}; the switch had not happened` : null,
      });
      store.addDeploymentEvent({
        deploymentId: dep.id,
        step: outcome,
        at: Date.now(),
        level: outcome === 'failed' ? 'warn' : 'info',
        message: outcome === 'done'
          ? `daemon restarted while ${dep.state}: traffic had already moved to ${dep.toRelease}; completed`
          : `daemon restarted while ${dep.state}: traffic had not moved; ${svc?.currentRelease ?? 'nothing'} keeps serving`,
      });
      logger.warn('resolved interrupted deployment', { deployment: dep.id, service: dep.service, was: dep.state, now: outcome });
    }

    const strays: Promise<void>[] = [];
    const waits: Promise<void>[] = [];
    for (const rec of store.listInstances()) {
      const rt = this.runtimes.get(rec.service);
      const svc = store.getService(rec.service);
      let role: 'current' | 'standby' | null = null;
      if (rt && svc?.currentRelease === rec.release) role = 'current';
      else if (rt && svc?.standbyRelease === rec.release && rt.config.standbyMs > 0) role = 'standby';
      if (!rt || !role) {
        logger.info('stopping stray instance', { instance: rec.id, service: rec.service, release: rec.release, pid: rec.pid });
        const signal = rt?.config.stopSignal ?? 'SIGTERM';
        strays.push(
          killStrayGroup(rec.pid, rec.startTime, signal, rt?.config.stopTimeoutMs ?? 10_000)
            .catch((err) => logger.warn('stopping stray failed', { instance: rec.id, error: errorMessage(err) }))
            .finally(() => store.deleteInstance(rec.id)),
        );
        continue;
      }
      const group = role === 'current' ? (rt.current ??= rt.newGroup(rec.release, rec.releaseDir, 'current')) : (rt.standby ?? rt.newGroup(rec.release, rec.releaseDir, 'standby'));
      const inst = rt.adopt(group, rec);
      if (!inst) {
        logger.info('recorded instance is gone', { instance: rec.id, pid: rec.pid });
        store.deleteInstance(rec.id);
        continue;
      }
      if (role === 'standby' && rt.standby !== group) rt.keepAsStandby(group, rt.config.standbyMs);
      if (role === 'current') waits.push(inst.waitHealthy(rt.config.health.startTimeoutMs).catch(() => {}));
    }
    await Promise.all(strays);

    // Services whose current release has no (or too few) live instances: start them.
    for (const rt of this.runtimes.values()) {
      const svc = store.getService(rt.name);
      if (!svc?.currentRelease) continue;
      if (!rt.current) {
        const rel = store.getRelease(rt.name, svc.currentRelease);
        if (!rel || !existsSync(rel.dir)) {
          logger.error('current release is missing on disk; deploy again', { service: rt.name, release: svc.currentRelease });
          continue;
        }
        rt.current = rt.newGroup(rel.id, rel.dir, 'current');
      }
      const group = rt.current;
      const missing = rt.config.instances - group.instances.size;
      if (missing !== 0) logger.info('restoring instance count', { service: rt.name, have: group.instances.size, want: rt.config.instances });
      await rt.scale(group);
      for (const i of group.list()) waits.push(i.waitHealthy(rt.config.health.startTimeoutMs).catch(() => {}));
    }
    // Re-check health before routing: listen only once the adopted instances
    // answered (bounded: a slow one joins the snapshot when it turns healthy).
    await Promise.race([Promise.all(waits), new Promise((r) => setTimeout(r, 5000).unref())]);
    this.routingChanged();
  }

  // ---- operations called by the control API --------------------------------

  /**
   * Deploy a release of a service from one of three sources: a local
   * directory (copied), the service's git repository at a ref (fetched into a
   * per-service object cache and exported), or a pushed commit (exported from
   * the pushed repository, for `git push` deploys). The release is made inside
   * the deployment's 'preparing' step; an existing release of the same commit is
   * reused as it is (already exported, already built).
   */
  async deploy(service: string, source: DeploySource, actor: string, emit: (e: DeployEvent) => void): Promise<DeployOutcome> {
    const rt = this.runtime(service);
    const unreserve = this.deployer.reserve(rt);
    try {
      const plan = await this.#sources.plan(rt, source);
      return await this.deployer.run(rt, { kind: 'deploy', actor, strategy: source.strategy ?? rt.config.strategy, skipMigrate: source.skipMigrate === true, ...plan }, emit);
    } finally {
      unreserve();
    }
  }

  async rollback(service: string, to: string | undefined, actor: string, emit: (e: DeployEvent) => void): Promise<DeployOutcome> {
    const rt = this.runtime(service);
    this.deployer.assertIdle(rt);
    const svc = this.store.getService(service);
    const target = to ?? svc?.standbyRelease ?? null;
    if (!target) {
      throw new BatonError('NO_PREVIOUS_RELEASE', `${service} has no previous release to roll back to; see \`baton releases ${service}\``);
    }
    if (target === svc?.currentRelease) {
      throw new BatonError('BAD_REQUEST', `${target} is already the current release of ${service}`);
    }
    const rel = this.store.getRelease(service, target);
    if (!rel || rel.service !== service) {
      throw new BatonError('RELEASE_UNKNOWN', `${service} has no release "${target}"; see \`baton releases ${service}\``);
    }
    if (!existsSync(rel.dir)) {
      throw new BatonError('RELEASE_INVALID', `release ${target} is missing on disk (${rel.dir})`);
    }
    return this.deployer.run(rt, { kind: 'rollback', release: { id: rel.id, dir: rel.dir }, actor }, emit);
  }

  async restart(service: string, actor: string, emit: (e: DeployEvent) => void): Promise<DeployOutcome> {
    const rt = this.runtime(service);
    this.deployer.assertIdle(rt);
    const current = rt.current;
    if (!current) throw new BatonError('RELEASE_UNKNOWN', `${service} has no running release to restart; deploy one first`);
    return this.deployer.run(rt, { kind: 'restart', release: { id: current.release, dir: current.dir }, actor }, emit);
  }

  // ---- canary, maintenance, pause ------------------------------------------

  /** Maintenance and pause are operator decisions: they survive a daemon restart. */
  async #restoreModes(): Promise<void> {
    for (const rt of this.runtimes.values()) {
      const st = this.store.getService(rt.name);
      if (st?.maintenance) rt.maintenanceHtml = await maintenancePage(rt.config, st.maintenance.message);
      rt.paused = st?.paused ?? false;
    }
  }

  #canaryOf(service: string): NonNullable<ServiceRuntime['canary']> {
    const run = this.runtime(service).canary;
    if (!run) throw new BatonError('NO_CANARY', `no canary of ${service} is running; start one with \`baton deploy ${service} … --strategy canary\``);
    return run;
  }

  promote(service: string, full: boolean): { release: string; step: number; of: number } {
    const run = this.#canaryOf(service);
    run.send(full ? 'promote_full' : 'promote');
    this.logger.info('canary promoted by the operator', { service, full, step: run.step });
    return { release: run.group.release, step: run.step, of: run.steps.length };
  }

  abort(service: string): { release: string } {
    const run = this.#canaryOf(service);
    run.send('abort', 'aborted by the operator (`baton abort`)');
    this.logger.info('canary aborted by the operator', { service });
    return { release: run.group.release };
  }

  async setMaintenance(service: string, on: boolean, message: string): Promise<{ maintenance: boolean }> {
    const rt = this.runtime(service);
    // Read the page first: a missing page file changes nothing.
    const html = on ? await maintenancePage(rt.config, message) : null;
    this.store.setServiceMaintenance(service, on ? { message, since: Date.now() } : null);
    rt.maintenanceHtml = html;
    this.routingChanged();
    this.logger.info(on ? 'maintenance mode on' : 'maintenance mode off', { service });
    return { maintenance: on };
  }

  setPaused(service: string, paused: boolean): { paused: boolean } {
    const rt = this.runtime(service);
    this.store.setServicePaused(service, paused);
    rt.paused = paused;
    this.routingChanged();
    this.logger.info(paused ? 'service paused: holding requests' : 'service resumed', { service });
    return { paused };
  }

  /** A one-time link that makes its visitor a beta tester (sent to any canary of the service). */
  beta(service: string, ttlMs: number): { url: string; expiresAt: number } {
    const rt = this.runtime(service);
    const token = makeBetaToken(this.#secret, ttlMs);
    const host = rt.config.hosts[0] ?? (this.listeners[0] ? `${this.listeners[0].host}:${this.listeners[0].port}` : 'localhost');
    return { url: `http://${host}${BETA_PATH}?token=${encodeURIComponent(token)}`, expiresAt: Date.now() + ttlMs };
  }

  setHostDrain(mode: DrainMode, weightPercent: number | null, reason: string): Promise<HostDrainState> {
    return this.hostDrain.set(mode, weightPercent, reason);
  }

  status(service?: string): StatusResponse {
    const names = service ? [this.runtime(service).name] : [...this.runtimes.keys()];
    const stats = new Map(this.proxy.targets().map((t) => [t.id, t]));
    const services: ServiceStatus[] = names.map((name) => {
      const rt = this.runtime(name);
      const svc = this.store.getService(name);
      const instances: InstanceStatus[] = [];
      for (const g of rt.groups) {
        for (const i of g.list()) {
          const s = stats.get(i.id);
          instances.push({
            id: i.id,
            release: i.release,
            role: g.role,
            pid: i.pid,
            port: i.port,
            state: i.state,
            healthy: i.healthy,
            inflight: s?.inflight ?? 0,
            websockets: s?.websockets ?? 0,
            requests: s?.requests ?? 0,
            startedAt: i.startedAt,
            lastHealthError: i.lastHealthError,
          });
        }
      }
      return {
        name,
        hosts: rt.config.hosts,
        isDefault: rt.config.isDefault,
        currentRelease: svc?.currentRelease ?? null,
        standbyRelease: svc?.standbyRelease ?? null,
        standbyWarmUntil: rt.standby?.standbyUntil ?? null,
        deploying: rt.activeDeployment,
        counters: this.proxy.counters(name),
        instances,
        canary: rt.canary
          ? {
              release: rt.canary.group.release,
              weight: rt.canary.weight,
              step: rt.canary.step + 1,
              steps: rt.canary.steps.map(describeStep),
              waiting: rt.canary.waiting,
            }
          : null,
        maintenance: svc?.maintenance ?? null,
        paused: rt.paused,
        releases: this.proxy.releaseMetrics(name).map((m) => ({
          release: m.release,
          requests: m.requests,
          status: m.status,
          connectionErrors: m.connectionErrors,
          failed: m.failed,
          appErrors: m.appErrors,
          inflight: m.inflight,
          websockets: m.websockets,
          p99Ms: p99FromHistogram(m.latency.bucketsMs, m.latency.counts),
        })),
      };
    });
    return {
      daemon: {
        pid: process.pid,
        version: VERSION,
        startedAt: this.startedAt,
        config: this.config.file,
        listeners: this.listeners.map((l) => `${l.host}:${l.port}`),
        stateDir: this.stateDir,
      },
      host: {
        drain: this.hostDrain.state,
        agentCheck: this.config.agentCheckListener ? `${this.config.agentCheckListener.host}:${this.config.agentCheckListener.port}` : null,
      },
      services,
      tls: this.tls?.status() ?? null,
    };
  }

  releases(service: string): ReleaseInfo[] {
    this.runtime(service);
    const svc = this.store.getService(service);
    return this.store.listReleases(service).map((r) => ({
      id: r.id,
      name: r.name,
      kind: r.kind,
      git: r.git,
      buildStatus: r.buildStatus,
      buildMs: r.buildMs,
      sourcePath: r.sourcePath,
      dir: r.dir,
      createdAt: r.createdAt,
      lastDeployedAt: r.lastDeployedAt,
      current: r.id === svc?.currentRelease,
      standby: r.id === svc?.standbyRelease,
    }));
  }

  history(service: string, limit: number, withEvents: boolean, id?: number): DeploymentInfo[] {
    this.runtime(service);
    const rows = id === undefined ? this.store.listDeployments(service, limit) : [this.store.getDeployment(id)].filter((d) => d?.service === service);
    if (id !== undefined && rows.length === 0) throw new BatonError('BAD_REQUEST', `${service} has no deployment #${id}; see \`baton history ${service}\``);
    return rows.map((d) => ({
      ...d!,
      ...(withEvents
        ? { events: this.store.listDeploymentEvents(d!.id).map((e) => ({ at: e.at, step: e.step, level: e.level, message: e.message, durationMs: e.durationMs })) }
        : {}),
    }));
  }

  /** A one-time sign-in link for the dashboard (`baton dashboard`). */
  dashboardLogin(ttlMs?: number): { url: string; expiresAt: number } {
    if (!this.#dashboard) {
      throw new BatonError('DASHBOARD_OFF', `the dashboard is off; add \`dashboard: { listen: "127.0.0.1:9190" }\` to ${this.config.file} and restart the daemon`);
    }
    return this.#dashboard.login(ttlMs);
  }

  logDir(service: string): string {
    this.runtime(service); // an unknown service is an error, as for logFiles
    return path.join(this.stateDir, 'logs', service);
  }

  logFiles(service: string): string[] {
    const rt = this.runtime(service);
    const files: string[] = [];
    for (const g of rt.groups) for (const i of g.list()) files.push(i.logFile);
    return files;
  }

  /**
   * Re-read the config file. A bad file, or a change that needs a restart,
   * changes nothing (the error goes back to the caller); otherwise each changed
   * setting is applied, and reported with when it takes effect (src/daemon/reload.ts).
   */
  async reload(): Promise<ReloadResult> {
    return applyReload(this, await loadConfig(this.config.file));
  }

  newRuntime(config: ServiceConfig): ServiceRuntime {
    return new ServiceRuntime(config, this);
  }

  /**
   * Stop the daemon. By default instances keep running for the next daemon to
   * re-adopt (an upgrade or a crash must not take the site down); with
   * stopInstances they are drained and stopped first.
   */
  stop(stopInstances: boolean): Promise<void> {
    this.#stopping ??= this.#teardown(stopInstances).finally(() => this.#resolveStopped());
    return this.#stopping;
  }

  async #teardown(stopInstances: boolean): Promise<void> {
    this.logger.info('daemon stopping', { stopInstances });
    await this.#control?.close().catch(() => {});
    await this.#dashboard?.close().catch(() => {});
    if (stopInstances) {
      await Promise.all([...this.runtimes.values()].map((rt) => rt.shutdown()));
    } else {
      for (const rt of this.runtimes.values()) rt.detach();
    }
    await this.tls?.close().catch(() => {});
    await this.hostDrain.close();
    await this.proxy.close().catch(() => {});
    this.store.close();
    this.logger.info('daemon stopped');
  }
}
