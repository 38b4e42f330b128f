// The composition root: the one place that wires config, store, proxy,
// supervisor, deployer and control API together, recovers state after a
// restart, and reloads the configuration.

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { loadConfigIsolated as loadConfig } from '../config/isolated.ts';
import type { DaemonConfig, FrontServiceConfig, ServiceConfig } from '../config/types.ts';
import { BatonError } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { VERSION } from '../core/version.ts';
import { Deployer, type DeployEvent, type DeployOutcome, type RunHooks } from '../deploy/deployer.ts';
import { Operations } from '../deploy/operations.ts';
import { recover } from '../deploy/recovery.ts';
import { ReleaseSources } from '../deploy/sources.ts';
import { ServiceRuntime, type RuntimeHost } from '../deploy/service-runtime.ts';
import { deploymentHistory, releaseList, serviceStatus } from './views.ts';
import { BETA_PATH, Proxy, makeBetaToken } from '../proxy/index.ts';
import { publicBase } from './public-url.ts';
import type { CounterTotals, ProxySpec } from '../proxy/types.ts';
import { Store } from '../store/index.ts';
import { Instance } from '../supervisor/index.ts';
import { TlsFrontDoor } from '../tls/index.ts';
import type { DeploySource, DeploymentInfo, ReleaseInfo, ReloadResult, StatusResponse } from '../control/protocol.ts';
import { ControlServer } from '../control/server.ts';
import { AuditLog } from '../control/audit.ts';
import { readControlKeyPair, readControlToken } from '../control/remote-secrets.ts';
import type { Dashboard } from '../dashboard/index.ts';
import { applyReload, requestLimits } from './reload.ts';
import { loadSecret, storedBetaTokens } from './secret.ts';
import { maintenancePage, routeSpec } from './traffic.ts';
import { HostDrain, type DrainMode, type HostDrainState } from './agent-check.ts';
import { closeUnclaimedFds } from '../core/listen-fds.ts';
import { DEFAULT_DRAIN_TIMEOUT_MS } from '../config/defaults.ts';
import type { UpgradeProgress, UpgradeResult } from '../control/protocol.ts';
import { injectedFault, predecessorPid } from './handover.ts';
import { upgrade as runUpgrade } from './upgrade.ts';
import { FrontService } from '../front/front-service.ts';
import { TargetModes } from '../front/target-modes.ts';
import { WorkerProxy } from './workers.ts';

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
  /** Front services: other hosts' listeners balanced by this daemon (src/front). */
  readonly fronts = new Map<string, FrontService>();
  readonly modes: TargetModes;
  readonly deployer: Deployer;
  readonly #ops: Operations;
  readonly startedAt = Date.now();
  listeners: { host: string; port: number }[] = [];
  /** HTTPS listeners, certificates and ACME; null without `tls:`. */
  tls: TlsFrontDoor | null = null;
  #control: ControlServer | null = null;
  #dashboard: Dashboard | null = null;
  #secret = '';
  readonly hostDrain: HostDrain;
  #stopping: Promise<void> | null = null;
  /** Set while `baton upgrade` hands the state over: why operations that change state are refused. */
  #frozen: string | null = null;
  /** While the state is taken back after a failed upgrade: one snapshot at the end, not one per re-adopted instance. */
  #holdPublish = false;
  #resolveStopped!: () => void;
  /** Settles once the daemon has stopped (by stop(), from a signal or the control API). */
  readonly stopped: Promise<void> = new Promise((r) => (this.#resolveStopped = r));

  private constructor(config: DaemonConfig, store: Store, logger: Logger) {
    this.config = config;
    this.store = store;
    this.logger = logger;
    this.stateDir = config.stateDir;
    const proxyOptions = {
      logger: logger.child({ component: 'proxy' }),
      clientIdleTimeoutMs: config.proxy.clientIdleTimeoutMs,
      headersTimeoutMs: config.proxy.headersTimeoutMs,
      betaTokens: storedBetaTokens(store, logger),
      trustedProxies: config.proxy.trustedProxies,
      limits: requestLimits(config.proxy),
      maxConnectionsPerClient: config.proxy.maxConnectionsPerClient,
      leanHttp1: config.proxy.http1FastPath,
    };
    // proxy.workers > 1: the same Proxy to the rest of the daemon, its public traffic served by worker processes.
    this.proxy = config.proxy.workers > 1
      ? new WorkerProxy({ ...proxyOptions, workers: config.proxy.workers, dbFile: path.join(config.stateDir, 'baton.db'), logLevel: config.logLevel })
      : new Proxy(proxyOptions);
    this.hostDrain = new HostDrain(config.stateDir, logger.child({ component: 'agent-check' }), (s) => this.proxy.setHostHealth(s.mode === 'ready'));
    this.modes = new TargetModes(config.stateDir, logger.child({ component: 'front' }));
    this.deployer = new Deployer({ store, proxy: this.proxy, logger, stateDir: config.stateDir });
    const sources = new ReleaseSources({ store, stateDir: config.stateDir, configFile: () => this.config.file });
    this.#ops = new Operations({ store, deployer: this.deployer, sources, logger });
  }

  static async start(opts: DaemonOptions): Promise<Daemon> {
    const config = await loadConfig(opts.configFile);
    const logger = opts.logger ?? createLogger(config.logLevel);
    await mkdir(config.stateDir, { recursive: true });
    // A successor of `baton upgrade` replaces the daemon that answers there (its socket is renamed over it).
    const successor = predecessorPid() !== null;
    if (!successor) await ControlServer.assertNoOtherDaemon(config.controlSocket);
    const store = Store.open(path.join(config.stateDir, 'baton.db'));
    const d = new Daemon(config, store, logger);
    try {
      d.#secret = await loadSecret(config.stateDir);
      for (const svc of config.services) d.runtimes.set(svc.name, new ServiceRuntime(svc, d));
      await d.#restoreModes();
      await recover(store, logger, d.runtimes);
      injectedFault(logger);
      for (const f of config.fronts) d.fronts.set(f.name, d.newFront(f));
      // One round of checks first: the listeners route to the hosts that answer from the first request.
      await Promise.all([...d.fronts.values()].map((f) => f.start()));
      d.publish();
      await d.proxy.setAccessLog(config.proxy.accessLog);
      d.listeners = await d.proxy.listen(config.listeners);
      const workers = d.proxy instanceof WorkerProxy ? d.proxy : null;
      if (config.tls) d.tls = await TlsFrontDoor.start({ proxy: d.proxy, config: config.tls, stateDir: config.stateDir, logger, workers });
      // proxy.workers > 1: the workers start once every public socket (plain and TLS) is bound: they inherit them at spawn.
      await workers?.serve();
      if (config.metricsListener) {
        const m = await d.proxy.listenMetrics(config.metricsListener.host, config.metricsListener.port);
        logger.info('metrics listening', { host: m.host, port: m.port, path: '/metrics' });
      }
      // One audit log for both the control API and the dashboard's sign-ins and actions.
      const audit = new AuditLog(path.join(config.stateDir, 'audit.log'), logger);
      if (config.dashboard) {
        // Loaded only when configured: a daemon without a dashboard keeps none of its code in memory.
        const { Dashboard } = await import('../dashboard/index.ts');
        d.#dashboard = await Dashboard.start({
          host: d,
          metrics: (service) => d.proxy.releaseMetrics(service),
          listener: config.dashboard.listener,
          sessionTimeoutMs: () => d.config.dashboard?.sessionTimeoutMs ?? 0,
          logger: logger.child({ component: 'dashboard' }),
          audit: (entry) => audit.record(entry),
        });
        logger.info('dashboard listening', { host: d.#dashboard.address.host, port: d.#dashboard.address.port, login: '`baton dashboard` prints a one-time link' });
      }
      if (config.agentCheckListener) await d.hostDrain.listen(config.agentCheckListener.host, config.agentCheckListener.port);
      d.#control = new ControlServer(d, logger.child({ component: 'control' }), audit);
      const remote = config.control.remote;
      if (remote) {
        const pair = await readControlKeyPair(remote.certFile, remote.keyFile);
        const token = await readControlToken(remote.tokenFile);
        // The dashboard, when configured, is mounted on it too: a browser elsewhere talks TLS end to end.
        const dash = d.#dashboard;
        await d.#control.listenRemote({ host: remote.listener.host, port: remote.listener.port, ...pair, token, ...(dash ? { web: (req, res) => dash.serveTls(req, res) } : {}) });
      }
      // Last: a successor's socket replaces its predecessor's only once everything else is up.
      await d.#control.listen(config.controlSocket, config.control, successor);
      const dropped = closeUnclaimedFds();
      if (dropped.length > 0) logger.info('inherited listeners no longer in the config closed', { listeners: dropped });
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

  /** Swap in a routing snapshot built from every service's live state (called by the runtimes). */
  publish(): void {
    if (this.#holdPublish) return;
    const spec: ProxySpec = {
      services: [...[...this.runtimes.values()].map((rt) => routeSpec(rt, this.#secret)), ...[...this.fronts.values()].map((f) => f.routeSpec())],
    };
    this.proxy.apply(spec);
  }

  runtime(name: string): ServiceRuntime {
    const rt = this.runtimes.get(name);
    const front = this.fronts.get(name);
    if (!rt && front) {
      throw new BatonError('SERVICE_UNKNOWN', `"${name}" is a front service: it balances other hosts (${front.config.targets.map((t) => t.name).join(', ')}) and runs nothing here; deploy on those hosts (\`baton fleet deploy\`)`);
    }
    if (!rt) {
      const known = [...this.runtimes.keys()].join(', ') || '(none)';
      throw new BatonError('SERVICE_UNKNOWN', `no service named "${name}" in ${this.config.file} (services: ${known})`);
    }
    return rt;
  }

  /** Maintenance and pause are operator decisions: they survive a daemon restart. */
  async #restoreModes(): Promise<void> {
    for (const rt of this.runtimes.values()) {
      const st = this.store.getService(rt.name);
      rt.restoreModes(st?.maintenance ? await maintenancePage(rt.config, st.maintenance.message) : null, st?.paused ?? false);
    }
  }

  // ---- the control API's verbs: each goes to the module that owns it ----------

  deploy(service: string, source: DeploySource, actor: string, emit: (e: DeployEvent) => void, hooks: RunHooks = {}): Promise<DeployOutcome> {
    this.#assertNotFrozen();
    return this.#ops.deploy(this.runtime(service), source, actor, emit, hooks);
  }

  rollback(service: string, to: string | undefined, actor: string, emit: (e: DeployEvent) => void, hooks: RunHooks = {}): Promise<DeployOutcome> {
    this.#assertNotFrozen();
    return this.#ops.rollback(this.runtime(service), to, actor, emit, hooks);
  }

  restart(service: string, actor: string, emit: (e: DeployEvent) => void, hooks: RunHooks = {}): Promise<DeployOutcome> {
    this.#assertNotFrozen();
    return this.#ops.restart(this.runtime(service), actor, emit, hooks);
  }

  promote(service: string, full: boolean): Promise<unknown> {
    this.#assertNotFrozen();
    return this.#ops.promote(this.runtime(service), full);
  }

  abort(service: string, deployment?: number, interrupted = false): Promise<unknown> {
    this.#assertNotFrozen();
    const reason = interrupted ? 'interrupted by the operator (Ctrl-C of `baton deploy`)' : 'aborted by the operator (`baton abort`)';
    return this.#ops.abort(this.runtime(service), reason, deployment);
  }

  async setMaintenance(service: string, on: boolean, message: string): Promise<{ maintenance: boolean }> {
    this.#assertNotFrozen();
    const rt = this.runtime(service);
    // Read the page first: a missing page file changes nothing.
    rt.setMaintenance(on ? await maintenancePage(rt.config, message) : null, message);
    this.logger.info(on ? 'maintenance mode on' : 'maintenance mode off', { service });
    return { maintenance: on };
  }

  setPaused(service: string, paused: boolean): { paused: boolean } {
    this.#assertNotFrozen();
    this.runtime(service).setPaused(paused);
    this.logger.info(paused ? 'service paused: holding requests' : 'service resumed', { service });
    return { paused };
  }

  /** A one-time link that makes its visitor a beta tester (sent to any canary of the service). */
  beta(service: string, ttlMs: number): { url: string; expiresAt: number } {
    const rt = this.runtime(service);
    const token = makeBetaToken(this.#secret, ttlMs);
    const base = publicBase({ publicUrl: rt.config.publicUrl, hosts: rt.config.hosts, plain: this.listeners, tls: this.tls?.listeners ?? [] });
    return { url: `${base}${BETA_PATH}?token=${encodeURIComponent(token)}`, expiresAt: Date.now() + ttlMs };
  }

  setHostDrain(mode: DrainMode, weightPercent: number | null, reason: string): Promise<HostDrainState> {
    this.#assertNotFrozen();
    return this.hostDrain.set(mode, weightPercent, reason);
  }

  status(service?: string): StatusResponse {
    const front = service === undefined ? undefined : this.fronts.get(service);
    const rts = front !== undefined ? [] : service ? [this.runtime(service)] : [...this.runtimes.values()];
    const fronts = front !== undefined ? [front] : service ? [] : [...this.fronts.values()];
    return {
      daemon: {
        pid: process.pid,
        version: VERSION,
        startedAt: this.startedAt,
        config: this.config.file,
        listeners: this.listeners.map((l) => `${l.host}:${l.port}`),
        stateDir: this.stateDir,
        controlSocket: this.config.controlSocket,
        ...(this.proxy instanceof WorkerProxy ? { proxyWorkers: this.proxy.workerStatus() } : {}),
        accessLog: this.proxy.accessLogStats(),
      },
      host: {
        drain: this.hostDrain.state,
        agentCheck: this.config.agentCheckListener ? `${this.config.agentCheckListener.host}:${this.config.agentCheckListener.port}` : null,
      },
      services: rts.map((rt) => serviceStatus(rt, this.store, this.proxy)),
      tls: this.tls?.status() ?? null,
      ...(this.fronts.size > 0 ? { fronts: fronts.map((f) => f.status({ targets: this.proxy.targets(), releases: this.proxy.releaseMetrics(f.name), counters: this.proxy.counters(f.name) })) } : {}),
    };
  }

  /** `baton target drain|undrain SERVICE TARGET`: this front daemon sends the target no new request (or again). */
  async setTargetDrain(service: string, target: string, drain: boolean, reason: string): Promise<{ service: string; target: string; state: string }> {
    this.#assertNotFrozen();
    const f = this.fronts.get(service);
    if (f === undefined) {
      const known = [...this.fronts.keys()].join(', ') || '(none)';
      throw new BatonError('SERVICE_UNKNOWN', `no front service named "${service}" in ${this.config.file} (front services: ${known})`);
    }
    return { service, target, state: await f.setOperatorDrain(target, drain, reason) };
  }

  newFront(config: FrontServiceConfig): FrontService {
    return new FrontService(config, { logger: this.logger.child({ component: 'front', service: config.name }), modes: this.modes, publish: () => this.publish() });
  }

  /** A front target removed by a reload: out of the snapshot already; let what runs on it finish, then close its pool. */
  retireTarget(id: string, drainMs: number): void {
    void this.proxy.drain(id, drainMs).then(() => this.proxy.forget(id)).catch((err) => this.logger.error('retiring a front target failed', { target: id, error: String(err) }));
  }

  releases(service: string): ReleaseInfo[] {
    return releaseList(this.runtime(service), this.store);
  }

  history(service: string, limit: number, withEvents: boolean, seq?: number): DeploymentInfo[] {
    return deploymentHistory(this.runtime(service), this.store, limit, withEvents, seq);
  }

  /** A one-time sign-in link for the dashboard (`baton dashboard`). */
  dashboardLogin(ttlMs?: number, remote?: { host: string }): { url: string; expiresAt: number } {
    if (!this.#dashboard) {
      throw new BatonError('DASHBOARD_OFF', `the dashboard is off; add \`dashboard: { listen: "127.0.0.1:9190" }\` to ${this.config.file} and restart the daemon`);
    }
    return remote ? this.#dashboard.loginTls(remote.host, ttlMs) : this.#dashboard.login(ttlMs);
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
    this.#assertNotFrozen();
    const result = await applyReload(this, await loadConfig(this.config.file));
    // The certificate files are read again too: a replacement not yet seen is served now (by every proxy worker too).
    await this.tls?.certificates.recheck();
    return result;
  }

  // ---- `baton upgrade`: this daemon hands over to a new one (src/daemon/upgrade.ts) ----

  #assertNotFrozen(): void {
    if (this.#frozen !== null) throw new BatonError('UPGRADE_IN_PROGRESS', this.#frozen);
  }

  upgrade(emit: (p: UpgradeProgress) => void): Promise<UpgradeResult> {
    this.#assertNotFrozen();
    return runUpgrade({
      logger: this.logger,
      configFile: this.config.file,
      assertUpgradable: () => this.#assertUpgradable(),
      freeze: () => {
        this.#frozen = `daemon pid ${process.pid} is handing over to a new daemon (\`baton upgrade\`); retry in a moment`;
        for (const rt of this.runtimes.values()) rt.detach();
      },
      thaw: () => this.#thaw(),
      retire: (drained) => this.#retire(drained),
    }, emit);
  }

  #assertUpgradable(): void {
    const refuse = (why: string): never => {
      throw new BatonError('UPGRADE_REFUSED', `cannot upgrade now: ${why}; nothing was changed`);
    };
    if (this.#stopping !== null) refuse('the daemon is stopping');
    for (const rt of this.runtimes.values()) {
      try {
        rt.assertIdle();
      } catch {
        refuse(`a deployment of ${rt.name} is running (wait for it, or \`baton abort ${rt.name}\`)`);
      }
      const draining = rt.draining();
      if (draining.length > 0) refuse(`${rt.name} is draining release ${draining.map((x) => x.release).join(', ')} until ${new Date(Math.max(...draining.map((x) => x.deadline))).toISOString()}`);
      if (rt.paused) refuse(`${rt.name} is paused: its held requests would be lost (\`baton resume ${rt.name}\` first)`);
    }
    const active = this.store.activeDeployments();
    if (active.length > 0) refuse(`deployment #${active[0]!.seq} of ${active[0]!.service} is ${active[0]!.state}`);
  }

  /** The successor failed: rebuild the runtimes from the store as a restarted daemon does, then route once. */
  async #thaw(): Promise<void> {
    this.#holdPublish = true;
    try {
      this.runtimes.clear();
      for (const svc of this.config.services) this.runtimes.set(svc.name, new ServiceRuntime(svc, this));
      await this.#restoreModes();
      await recover(this.store, this.logger, this.runtimes);
    } finally {
      this.#holdPublish = false;
      this.#frozen = null;
    }
    this.publish();
  }

  /** The successor serves: stop accepting, drain what is open (bounded by the longest drain timeout), exit. */
  #retire(drained: (totals: CounterTotals) => Promise<void>): { inflight: number; webSockets: number; deadline: number } {
    const deadlineMs = Math.max(0, ...this.config.services.map((s) => s.drainTimeoutMs)) || DEFAULT_DRAIN_TIMEOUT_MS;
    const h = this.proxy.handOver(deadlineMs);
    // The rest after this tick: the `baton upgrade` answer goes out on the control socket first.
    this.#stopping = new Promise<void>((resolve) => setImmediate(resolve))
      .then(async () => {
        await this.#control?.close(true).catch(() => {});
        await this.#dashboard?.close().catch(() => {});
        await this.tls?.close().catch(() => {});
        await this.hostDrain.close();
        for (const f of this.fronts.values()) f.stop();
        await h.done;
        await drained(this.proxy.counterTotals());
        this.store.close();
        this.logger.info('upgrade: old daemon drained; exiting', { pid: process.pid });
      })
      .finally(() => this.#resolveStopped());
    return { inflight: h.inflight, webSockets: h.webSockets, deadline: Date.now() + deadlineMs };
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
    for (const f of this.fronts.values()) f.stop();
    await this.#control?.close().catch(() => {});
    await this.#dashboard?.close().catch(() => {});
    if (stopInstances) {
      // Also the workers of leaders that died, still finishing what they had.
      await Promise.all([...[...this.runtimes.values()].map((rt) => rt.shutdown()), Instance.stopRemainsOfDeadLeaders()]);
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
