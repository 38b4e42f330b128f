// The control plane's side of `proxy.workers` > 1: N proxy worker processes
// (src/daemon/worker-main.ts) serve the public listeners, and this object
// stands for all of them where the daemon, the deployer and the views expect
// the proxy. It holds the listening sockets (bound, never accepted on here),
// starts each worker with them as inherited fds — one kernel socket, one
// accept queue shared by every worker, so a worker that dies loses nothing
// queued and the others go on accepting — publishes every routing spec to
// every worker (versioned, acknowledged), asks every worker to drain, and sums
// their counters. The TLS listeners are shared the same way: the certificates
// (files watched, ACME obtained) and the pending ACME challenges stay here and
// every change is sent to every worker (TlsWorkers). The workers' access log
// lines come here in batches and this process alone writes the file. What
// stays in this process: the preview listener, the metrics listener, and the
// targets' registry (which target is in service).

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import { BatonError, errorMessage } from '../core/errors.ts';
import { claimInheritedFd, holdListener, LISTEN_FDS_ENV, listenerKey } from '../core/listen-fds.ts';
import type { Logger, LogLevel } from '../core/log.ts';
import { inExecutable } from '../core/self.ts';
import { Proxy, type AccessLogConfig, type AccessLogStats, type ListenerSpec, type ProxyOptions, type ProxySpec } from '../proxy/index.ts';
import type { DrainResult, ReleaseMetrics, RequestLimits, RoutingCounters, ServiceCounters, TargetStats } from '../proxy/index.ts';
import type { PlainFront, TlsListenerOptions } from '../proxy/listeners.ts';
import type { AccessLineForward, AccessLog } from '../proxy/access-log.ts';
import type { CertificateSetEntry, PendingChallenges, TlsWorkers } from '../tls/index.ts';
import { DEFAULT_REQUEST_LIMITS } from '../proxy/limits.ts';
import { DEFAULT_MAX_CONNECTIONS_PER_CLIENT } from '../config/defaults.ts';
import { renderPrometheus } from '../proxy/metrics.ts';
import { renderShedding } from '../proxy/admission.ts';
import { emptyReport, releaseTotals, sumReports, type FromWorker, type ToWorker, type WorkerPlainFront, type WorkerReport, type WorkerTls } from './worker-protocol.ts';
import { daemonMallocEnv } from '../core/malloc-env.ts';
import type { CounterTotals } from '../proxy/types.ts';

/** How often each worker reports its counters: status, /metrics and the canary analysis read at most this old a sum. */
const REPORT_EVERY_MS = 500;
/** A worker must say `ready` (spec applied, listening) within this. */
const WORKER_START_TIMEOUT_MS = 30_000;
/** A worker that lived this long before it died is restarted at once; one dying sooner waits (doubling up to the max). */
const STABLE_AFTER_MS = 10_000;
const RESTART_DELAY_MS = 100;
const MAX_RESTART_DELAY_MS = 5_000;
/** Every live worker acknowledges new ACME challenges within this, or the CA is told to look anyway (and retried later if it fails). */
const CHALLENGE_ACK_TIMEOUT_MS = 10_000;
/** The worker's stdio: fd 3 is the IPC channel, the listening sockets follow. */
const FIRST_LISTENER_FD = 4;

export interface WorkerProxyOptions extends ProxyOptions {
  workers: number;
  /** The store's file: workers claim used beta link tokens there. */
  dbFile: string;
  logLevel: LogLevel;
}

/** One worker as `status` shows it. */
export interface WorkerStatus {
  index: number;
  pid: number | null;
  /** Requests this worker (since its last start) counted. */
  requests: number;
  restarts: number;
  rss: number;
}

interface Worker {
  readonly index: number;
  readonly child: ChildProcess;
  readonly startedAt: number;
  ready: boolean;
  /** Its process ended. */
  exited: boolean;
  /** Its IPC channel closed: every message it sent has been read (a final report comes before this). */
  disconnected: boolean;
  /** The highest routing version it acknowledged. */
  applied: number;
  /** The newest ACME challenges it answers (those of its start once it is ready, then each acknowledged). */
  challengesApplied: number;
  readonly initChallenges: number;
  report: WorkerReport;
  exitCode: number | null;
  exitSignal: string | null;
  /** Drains asked of it, by id: resolved with its answer, or (it died) with what its last report held. */
  readonly drains: Map<number, { targetId: string; resolve: (r: DrainResult) => void }>;
  readonly exit: Promise<void>;
}

/** A bound (not accepting) listening socket held for the workers, or one inherited. */
interface HeldSocket {
  key: string;
  fd: number;
  /** Withdraws it from what `baton upgrade` passes on (before it is closed). */
  unhold: () => void;
  /** node's TCP handle when bound here; null for an inherited fd (systemd's or a predecessor's). */
  handle: { fd: number; close(): void; getsockname(out: Record<string, unknown>): number } | null;
  address: { host: string; port: number };
}

type CreateServerHandle = (address: string, port: number, addressType: number, fd?: number, flags?: number) => HeldSocket['handle'] | number;

/**
 * Bind host:port without accepting: node's own helper for node:cluster's
 * shared handles (bind(2) only). The first worker's listen({ fd }) makes the
 * socket listen; from then on it stays listening for as long as this process
 * holds it, so while a worker restarts the kernel queues what arrives. A
 * net.Server (or listen on this handle) would accept connections here.
 */
function bindOnly(host: string, port: number): NonNullable<HeldSocket['handle']> {
  const create = (net as unknown as { _createServerHandle?: CreateServerHandle })._createServerHandle;
  const family = net.isIP(host);
  if (typeof create !== 'function' || family === 0) throw new BatonError('LISTEN_FAILED', `cannot listen on ${host}:${port} for the proxy workers: ${family === 0 ? 'not an IP address' : 'this Node cannot bind a shared socket'}`);
  const h = create(host, port, family);
  if (typeof h === 'number' || h === null) throw new BatonError('LISTEN_FAILED', `cannot listen on ${host}:${port}: ${typeof h === 'number' ? getSystemErrorName(h) : 'no handle'}`);
  return h;
}

function workerScript(): string {
  return fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './worker-main.ts' : './worker-main.js', import.meta.url));
}

/**
 * What each worker is told: the pause queue and the in-flight cap with its
 * queue are per worker (held and queued requests are sockets in that worker),
 * so each gets its share of the bound. A worker may then shed while another
 * has room: the kernel spreads connections, not load, evenly.
 */
function specForWorkers(spec: ProxySpec, n: number): ProxySpec {
  const share = (x: number): number => (x === 0 ? 0 : Math.max(1, Math.ceil(x / n)));
  return {
    services: spec.services.map((s) => {
      let out = s;
      if (s.pause) out = { ...out, pause: { ...s.pause, maxQueued: share(s.pause.maxQueued) } };
      if (s.limits && s.limits.maxInflight !== null) out = { ...out, limits: { ...s.limits, maxInflight: share(s.limits.maxInflight), maxQueued: share(s.limits.maxQueued) } };
      return out;
    }),
  };
}

export class WorkerProxy extends Proxy implements TlsWorkers {
  readonly #n: number;
  readonly #log: Logger;
  readonly #dbFile: string;
  #logLevel: LogLevel;
  readonly #workers: (Worker | null)[];
  readonly #restarts: number[];
  #sockets: HeldSocket[] = [];
  #listeners: ListenerSpec[] = [];
  #version = 0;
  #spec: ProxySpec = { services: [] };
  /** The cumulative counters of workers that died: the sums keep counting from the daemon's start. */
  #retired: WorkerReport = emptyReport();
  /** The settings every worker is given (and sent again when a reload changes one). */
  #settings: { clientIdleTimeoutMs: number; headersTimeoutMs: number; trustedProxies: string[]; limits: RequestLimits; maxConnectionsPerClient: number };
  #hostHealthy = true;
  #drainSeq = 0;
  /** Waiters for every live worker to acknowledge a routing version. */
  #ackWaiters = new Set<() => void>();
  #closing = false;
  /** serve() succeeded: from then on a worker that exits is replaced. */
  #serving = false;
  #closedWorkers: Promise<void> | null = null;
  /** The TLS listeners every worker serves (null: none). */
  #tls: WorkerTls | null = null;
  #certificates: CertificateSetEntry[] | null = null;
  #challenges: PendingChallenges = { http01: {}, tlsAlpn01: {} };
  #challengesId = 0;
  #plainFront: WorkerPlainFront | null = null;
  #accessLog: AccessLogConfig | null = null;
  /** During a hand-over: the access log, taken from the base (which closes its own at once), open until the workers are gone. */
  #draining: AccessLog | null = null;

  readonly #leanHttp1: boolean;

  constructor(opts: WorkerProxyOptions) {
    super(opts);
    this.#n = opts.workers;
    this.#log = opts.logger;
    this.#dbFile = opts.dbFile;
    this.#logLevel = opts.logLevel;
    this.#leanHttp1 = opts.leanHttp1 ?? true;
    this.#workers = new Array<Worker | null>(opts.workers).fill(null);
    this.#restarts = new Array<number>(opts.workers).fill(0);
    this.#settings = {
      clientIdleTimeoutMs: opts.clientIdleTimeoutMs,
      headersTimeoutMs: opts.headersTimeoutMs,
      trustedProxies: [...(opts.trustedProxies ?? [])],
      limits: opts.limits ?? DEFAULT_REQUEST_LIMITS,
      // Counted per worker: a client whose connections land on several workers may hold up to N × this.
      maxConnectionsPerClient: opts.maxConnectionsPerClient ?? DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    };
  }

  /**
   * Bind the public listeners here (not accepting); the workers start on them
   * (and on the TLS ones, listenTls) with serve().
   */
  override async listen(listeners: ListenerSpec[]): Promise<{ host: string; port: number }[]> {
    if (inExecutable()) throw new BatonError('CONFIG_INVALID', 'proxy.workers > 1 is not yet supported in the single executable (it has no worker entry); use 1, or the npm package');
    if (listeners.some((l) => l.proxyProtocol === true) && this.#settings.trustedProxies.length === 0) {
      throw new BatonError('CONFIG_INVALID', 'a listener requires the PROXY protocol, which is accepted only from trusted proxies, and none are set');
    }
    const bound = this.#bind('public', listeners);
    this.#listeners = listeners;
    return bound;
  }

  /**
   * Bind the TLS listeners here (not accepting), for the workers serve()
   * starts: each terminates TLS on them with `opts` and its copy of the
   * certificates (setCertificates, which the front door calls first) and of
   * the pending ACME challenges.
   */
  override listenTls(listeners: ListenerSpec[], opts: TlsListenerOptions): Promise<{ host: string; port: number }[]> {
    try {
      if (this.#workers.some((w) => w !== null)) throw new BatonError('LISTEN_FAILED', 'the TLS listeners must be bound before the proxy workers start (they inherit the sockets at spawn)');
      if (this.#certificates === null) throw new BatonError('LISTEN_FAILED', 'the TLS listeners of proxy workers need the certificates sent to the workers (the front door\'s `workers` option)');
      if (listeners.some((l) => l.proxyProtocol === true) && this.#settings.trustedProxies.length === 0) {
        throw new BatonError('CONFIG_INVALID', 'a TLS listener requires the PROXY protocol, which is accepted only from trusted proxies, and none are set');
      }
      const bound = this.#bind('tls', listeners);
      const { certificates: _c, acmeTlsAlpn, ...options } = opts;
      this.#tls = { listeners, options: { ...options, tlsAlpn01: acmeTlsAlpn !== null && acmeTlsAlpn !== undefined } };
      this.#log.info('proxy listening (TLS, in the workers)', { listen: bound.map((b) => `${b.host}:${b.port}`), http2: opts.http2 });
      return Promise.resolve(bound);
    } catch (err) {
      return Promise.reject(err instanceof BatonError ? err : new BatonError('LISTEN_FAILED', `cannot listen on ${listeners.map((l) => `${l.host}:${l.port}`).join(', ')}: ${errorMessage(err)}`));
    }
  }

  /** Bind (or take over) each listener's socket without accepting on it; the addresses bound, in order. */
  #bind(role: 'public' | 'tls', listeners: ListenerSpec[]): { host: string; port: number }[] {
    const mine: HeldSocket[] = [];
    try {
      for (const l of listeners) {
        const key = listenerKey(role, l.host, l.port);
        const inherited = claimInheritedFd(key);
        if (inherited !== undefined) {
          mine.push({ key, fd: inherited, unhold: holdListener(key, inherited), handle: null, address: { host: l.host, port: l.port } });
          continue;
        }
        const handle = bindOnly(l.host, l.port);
        const out: Record<string, unknown> = {};
        handle.getsockname(out);
        mine.push({ key, fd: handle.fd, unhold: holdListener(key, handle.fd), handle, address: { host: String(out['address']), port: Number(out['port']) } });
      }
    } catch (err) {
      releaseSockets(mine);
      throw err instanceof BatonError ? err : new BatonError('LISTEN_FAILED', `cannot listen on ${listeners.map((l) => `${l.host}:${l.port}`).join(', ')}: ${errorMessage(err)}`);
    }
    this.#sockets.push(...mine);
    return mine.map((m) => m.address);
  }

  /** Start every worker on the sockets bound by listen() and listenTls(); resolves once every worker serves. */
  async serve(): Promise<void> {
    try {
      const started = Array.from({ length: this.#n }, (_, i) => this.#start(i));
      await Promise.all(started.map((w) => this.#whenReady(w)));
    } catch (err) {
      await this.#stopWorkers(0);
      this.#releaseSockets();
      throw err instanceof BatonError ? err : new BatonError('LISTEN_FAILED', `cannot start the proxy workers: ${errorMessage(err)}`);
    }
    this.#serving = true;
    this.#checkAcks();
    this.#log.info('proxy workers serving', { workers: this.#n, pids: this.#workers.map((w) => w?.child.pid), listen: this.#sockets.map((s) => `${s.address.host}:${s.address.port}`) });
  }

  /** What the TLS listeners serve (TlsWorkers): kept for workers started later, sent to those running. */
  setCertificates(set: CertificateSetEntry[]): void {
    this.#certificates = set;
    this.#broadcast({ t: 'certificates', set });
  }

  /**
   * The pending ACME challenges (TlsWorkers): resolves once every live worker
   * answers them (whichever the CA's connection reaches), or after
   * CHALLENGE_ACK_TIMEOUT_MS; a worker started later gets them at its start.
   */
  setChallenges(c: PendingChallenges): Promise<void> {
    this.#challenges = c;
    const id = ++this.#challengesId;
    this.#broadcast({ t: 'challenges', id, challenges: c });
    const done = (): boolean => this.#serving && this.#workers.every((w) => w === null || w.exited || (w.ready && w.challengesApplied >= id));
    return this.#until(done, CHALLENGE_ACK_TIMEOUT_MS, () => this.#log.warn('proxy workers: ACME challenges not acknowledged in time; the CA is told to look anyway', { workers: this.#workers.map((w) => w?.challengesApplied) }));
  }

  override setPlainFront(front: PlainFront | null): void {
    super.setPlainFront(front);
    this.#plainFront = front === null ? null : { redirectPort: front.redirectPort, http01: front.challenge !== null };
    this.#broadcast({ t: 'plain-front', front: this.#plainFront });
  }

  /**
   * The access log is written here, from the lines the workers send in
   * batches (one writer: rotation and reopen as with one process); the
   * workers are told whether to send them, and in which form.
   */
  override async setAccessLog(cfg: AccessLogConfig | null, forward: AccessLineForward | null = null): Promise<void> {
    await super.setAccessLog(cfg, forward);
    this.#accessLog = cfg;
    this.#broadcast({ t: 'access-log', config: cfg });
  }

  /** Lines written here (every worker's), and those dropped here or in a worker. */
  override accessLogStats(): AccessLogStats | null {
    const own = super.accessLogStats();
    return own === null ? null : { ...own, dropped: own.dropped + this.#sum().accessLogDropped };
  }

  #start(index: number): Worker {
    const fds: Record<string, number> = {};
    this.#sockets.forEach((s, i) => (fds[s.key] = FIRST_LISTENER_FD + i));
    const child = spawn(process.execPath, [...process.execArgv, workerScript()], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...this.#sockets.map((s) => s.fd)],
      env: { ...process.env, ...daemonMallocEnv(), [LISTEN_FDS_ENV]: JSON.stringify(fds) },
    });
    let exited!: () => void;
    const w: Worker = {
      index,
      child,
      startedAt: Date.now(),
      ready: false,
      exited: false,
      disconnected: false,
      applied: 0,
      challengesApplied: 0,
      initChallenges: this.#challengesId,
      report: emptyReport(),
      exitCode: null,
      exitSignal: null,
      drains: new Map(),
      exit: new Promise<void>((r) => (exited = r)),
    };
    this.#workers[index] = w;
    child.on('message', (m: FromWorker) => this.#onMessage(w, m));
    child.on('error', (err) => this.#log.error('proxy worker: spawn failed', { worker: index, error: errorMessage(err) }));
    // Gone once it exited and its channel closed, whichever comes last: its last report is read by then.
    const gone = (): void => {
      if (!w.exited || !w.disconnected) return;
      this.#onExit(w, w.exitCode, w.exitSignal);
      exited();
    };
    child.once('exit', (code, signal) => {
      w.exited = true;
      w.exitCode = code;
      w.exitSignal = signal;
      if (!child.connected) w.disconnected = true;
      gone();
    });
    child.once('disconnect', () => {
      w.disconnected = true;
      gone();
    });
    this.#send(w, {
      t: 'init',
      index,
      listeners: this.#listeners,
      settings: this.#settings,
      leanHttp1: this.#leanHttp1,
      logLevel: this.#logLevel,
      dbFile: this.#dbFile,
      hostHealthy: this.#hostHealthy,
      version: this.#version,
      spec: specForWorkers(this.#spec, this.#n),
      reportEveryMs: REPORT_EVERY_MS,
      tls: this.#tls,
      certificates: this.#certificates ?? [],
      challenges: this.#challenges,
      plainFront: this.#plainFront,
      accessLog: this.#accessLog,
    });
    return w;
  }

  #whenReady(w: Worker): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new BatonError('LISTEN_FAILED', `proxy worker ${w.index} did not start within ${WORKER_START_TIMEOUT_MS / 1000} s`)), WORKER_START_TIMEOUT_MS);
      const onMessage = (m: FromWorker): void => {
        if (m.t === 'ready') done(null);
        else if (m.t === 'failed') done(new BatonError('LISTEN_FAILED', `proxy worker ${w.index} failed to start: ${m.message}`));
      };
      const onExit = (code: number | null, signal: string | null): void => done(new BatonError('LISTEN_FAILED', `proxy worker ${w.index} exited during start-up (${signal ?? `status ${code}`})`));
      const done = (err: BatonError | null): void => {
        clearTimeout(timer);
        w.child.off('message', onMessage);
        w.child.off('exit', onExit);
        if (err === null) resolve();
        else reject(err);
      };
      w.child.on('message', onMessage);
      w.child.once('exit', onExit);
    });
  }

  #send(w: Worker, m: ToWorker): void {
    if (w.exited || !w.child.connected) return;
    // A worker dying meanwhile shows as its exit, handled there.
    w.child.send(m, (err) => {
      if (err) this.#log.debug('proxy worker: message not delivered', { worker: w.index, message: m.t, error: errorMessage(err) });
    });
  }

  #broadcast(m: ToWorker): void {
    for (const w of this.#workers) if (w !== null) this.#send(w, m);
  }

  #onMessage(w: Worker, m: FromWorker): void {
    switch (m.t) {
      case 'ready':
        w.ready = true;
        w.challengesApplied = Math.max(w.challengesApplied, w.initChallenges);
        this.#checkAcks();
        if (this.#restarts[w.index]! > 0) this.#log.info('proxy worker serving again', { worker: w.index, pid: m.pid });
        break;
      case 'applied':
        w.applied = Math.max(w.applied, m.version);
        this.#checkAcks();
        break;
      case 'drained':
        w.drains.get(m.id)?.resolve(m.result);
        w.drains.delete(m.id);
        break;
      case 'report':
        w.report = m.report;
        break;
      case 'challenges-applied':
        w.challengesApplied = Math.max(w.challengesApplied, m.id);
        this.#checkAcks();
        break;
      case 'access-lines':
        if (this.#draining !== null) this.#draining.writeLines(m.text, m.count);
        else this.writeAccessLines(m.text, m.count);
        break;
      case 'failed':
        this.#log.error('proxy worker failed', { worker: w.index, error: m.message });
        break;
    }
  }

  #onExit(w: Worker, code: number | null, signal: string | null): void {
    // What it counted stays counted; what it held in flight is gone with it.
    this.#retired = sumReports([this.#retired, w.report], { gauges: false });
    for (const [, d] of w.drains) {
      const inflight = w.report.targets.find((t) => t.id === d.targetId)?.inflight ?? 0;
      d.resolve({ abandonedRequests: inflight, closedWebSockets: 0, durationMs: 0 });
    }
    w.drains.clear();
    this.#checkAcks();
    if (this.#workers[w.index] === w) this.#workers[w.index] = null;
    // During start-up listen() reports the failure; a stop is what close() asked for.
    if (this.#closing || !this.#serving) return;
    this.#log.warn('proxy worker exited; starting another on the same sockets (the other workers keep accepting)', { worker: w.index, pid: w.child.pid, code, signal });
    this.#restartLater(w);
  }

  #restartLater(w: Worker): void {
    const lived = Date.now() - w.startedAt;
    const n = ++this.#restarts[w.index]!;
    const wait = lived >= STABLE_AFTER_MS ? 0 : Math.min(MAX_RESTART_DELAY_MS, RESTART_DELAY_MS * 2 ** Math.min(10, n - 1));
    setTimeout(() => {
      if (this.#closing || this.#workers[w.index] !== null) return;
      const next = this.#start(w.index);
      this.#whenReady(next).catch((err) => {
        this.#log.error('proxy worker restart failed', { worker: w.index, error: errorMessage(err) });
        // One that hangs in its start is killed: its exit starts the next attempt (after the backoff).
        if (!next.exited) next.child.kill('SIGKILL');
      });
    }, wait).unref();
  }

  #checkAcks(): void {
    for (const f of [...this.#ackWaiters]) f();
  }

  /** Every live worker routes by `version` (or newer), or `timeoutMs` passed: what a drain waits for before it starts. */
  #routed(version: number, timeoutMs: number): Promise<void> {
    const done = (): boolean => this.#workers.every((w) => w === null || w.exited || w.applied >= version);
    return this.#until(done, timeoutMs, () => this.#log.warn('proxy workers: a routing change was not acknowledged in time', { version, workers: this.#workers.map((w) => w?.applied) }));
  }

  /** Until `done()` holds (checked on each worker's acknowledgement, start and exit), or `timeoutMs` passed (`late` is called). */
  #until(done: () => boolean, timeoutMs: number, late: () => void): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.#ackWaiters.delete(check);
        resolve();
      };
      const check = (): void => {
        if (done()) finish();
      };
      const timer = setTimeout(() => {
        late();
        finish();
      }, Math.max(0, timeoutMs));
      this.#ackWaiters.add(check);
    });
  }

  override apply(spec: ProxySpec): void {
    super.apply(spec);
    this.#spec = spec;
    this.#version++;
    this.#broadcast({ t: 'apply', version: this.#version, spec: specForWorkers(spec, this.#n) });
  }

  /** A drain asks every worker, once each routes without the target, and ends when all have answered. */
  override async drain(targetId: string, deadlineMs: number, signal?: AbortSignal): Promise<DrainResult> {
    const started = performance.now();
    await this.#routed(this.#version, deadlineMs);
    const asked = this.#workers.filter((w): w is Worker => w !== null && !w.exited);
    const ids: { w: Worker; id: number }[] = [];
    const answers = asked.map(
      (w) =>
        new Promise<DrainResult>((resolve) => {
          const id = ++this.#drainSeq;
          ids.push({ w, id });
          w.drains.set(id, { targetId, resolve });
          this.#send(w, { t: 'drain', id, targetId, deadlineMs: Math.max(0, deadlineMs - (performance.now() - started)) });
        }),
    );
    const onAbort = (): void => {
      for (const { w, id } of ids) this.#send(w, { t: 'drain-abort', id });
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
    try {
      const results = await Promise.all(answers);
      const durationMs = Math.round(performance.now() - started);
      const r: DrainResult = {
        abandonedRequests: results.reduce((n, x) => n + x.abandonedRequests, 0),
        closedWebSockets: results.reduce((n, x) => n + x.closedWebSockets, 0),
        durationMs,
      };
      if (signal?.aborted || results.some((x) => x.cancelled === true)) r.cancelled = true;
      return r;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  override async forget(targetId: string): Promise<void> {
    this.#broadcast({ t: 'forget', targetId });
    await super.forget(targetId);
    // A release whose figures went away here (its last instance) starts from zero if it comes back, as in one process.
    const known = new Set(super.releaseMetrics().map((m) => `${m.service}\n${m.release}`));
    this.#retired.releases = this.#retired.releases.filter((m) => known.has(`${m.service}\n${m.release}`));
    this.#retired.targets = this.#retired.targets.filter((t) => t.id !== targetId);
  }

  /** Live workers' latest reports and the dead ones' totals, summed. */
  #sum(): WorkerReport {
    return sumReports([this.#retired, ...this.#workers.filter((w): w is Worker => w !== null).map((w) => w.report)]);
  }

  override counters(service: string): ServiceCounters {
    const total = super.counters(service);
    const w = this.#sum().services[service];
    if (w !== undefined) for (const k of Object.keys(total) as (keyof ServiceCounters)[]) total[k] += w[k] ?? 0;
    return total;
  }

  override routingCounters(service: string): RoutingCounters {
    const total = super.routingCounters(service);
    const w = this.#sum().routing[service];
    if (w !== undefined) for (const k of Object.keys(total) as (keyof RoutingCounters)[]) total[k] += w[k] ?? 0;
    return total;
  }

  /** The releases this process knows (in service or draining, as in one process), each with the workers' figures added. */
  override releaseMetrics(service?: string): ReleaseMetrics[] {
    const sum = this.#sum().releases;
    const byKey = new Map(sum.map((m) => [`${m.service}\n${m.release}`, m]));
    return super.releaseMetrics(service).map((mine) => {
      const w = byKey.get(`${mine.service}\n${mine.release}`);
      return w === undefined ? mine : sumReports([{ ...emptyReport(), releases: [mine] }, { ...emptyReport(), releases: [w] }]).releases[0]!;
    });
  }

  override targets(): TargetStats[] {
    const sum = new Map(this.#sum().targets.map((t) => [t.id, t]));
    return super.targets().map((t) => {
      const w = sum.get(t.id);
      return w === undefined ? t : { ...t, inflight: t.inflight + w.inflight, websockets: t.websockets + w.websockets, requests: t.requests + w.requests };
    });
  }

  override prometheusText(): string {
    const services = [...new Set([...Object.keys(this.#sum().routing), ...super.releaseMetrics().map((m) => m.service)])].sort();
    const routing = services.map((service) => ({ service, routing: this.routingCounters(service) }));
    const held = routing.map((r) => ({ service: r.service, held: r.routing.heldNow }));
    const shedding = routing.map((r) => ({ ...r, queued: r.routing.queuedNow }));
    const lines = [
      '# HELP process_resident_memory_bytes Resident memory size in bytes (the daemon: control plane).',
      '# TYPE process_resident_memory_bytes gauge',
      `process_resident_memory_bytes ${process.memoryUsage.rss()}`,
      '# HELP baton_proxy_worker_requests_total Requests counted by each proxy worker since it (re)started.',
      '# TYPE baton_proxy_worker_requests_total counter',
      ...this.workerStatus().map((w) => `baton_proxy_worker_requests_total{worker="${w.index}"} ${w.requests}`),
      '# HELP baton_proxy_worker_restarts_total Proxy workers started again after they died.',
      '# TYPE baton_proxy_worker_restarts_total counter',
      ...this.workerStatus().map((w) => `baton_proxy_worker_restarts_total{worker="${w.index}"} ${w.restarts}`),
      '# HELP baton_proxy_worker_resident_memory_bytes Resident memory of each proxy worker, measured in the worker.',
      '# TYPE baton_proxy_worker_resident_memory_bytes gauge',
      ...this.workerStatus().map((w) => `baton_proxy_worker_resident_memory_bytes{worker="${w.index}"} ${w.rss}`),
    ];
    return renderPrometheus(this.releaseMetrics(), held) + renderShedding(shedding) + lines.join('\n') + '\n';
  }

  /** Each worker: its pid, what it served since it started, how often it was restarted. */
  workerStatus(): WorkerStatus[] {
    return this.#workers.map((w, index) => ({
      index,
      pid: w?.child.pid ?? null,
      requests: w === null ? 0 : Object.values(w.report.services).reduce((n, c) => n + c.requests, 0),
      restarts: this.#restarts[index]!,
      rss: w?.report.rss ?? 0,
    }));
  }

  override setClientTimeouts(t: { clientIdleTimeoutMs: number; headersTimeoutMs: number }): void {
    super.setClientTimeouts(t);
    this.#settings = { ...this.#settings, clientIdleTimeoutMs: t.clientIdleTimeoutMs, headersTimeoutMs: t.headersTimeoutMs };
    this.#broadcast({ t: 'settings', ...this.#settings });
  }

  override setTrustedProxies(cidrs: readonly string[]): void {
    // Checked here first: a malformed network throws before any worker is told.
    super.setTrustedProxies(cidrs);
    this.#settings = { ...this.#settings, trustedProxies: [...cidrs] };
    this.#broadcast({ t: 'settings', ...this.#settings });
  }

  override setRequestLimits(limits: RequestLimits): void {
    super.setRequestLimits(limits);
    this.#settings = { ...this.#settings, limits };
    this.#broadcast({ t: 'settings', ...this.#settings });
  }

  override setMaxConnectionsPerClient(max: number): void {
    super.setMaxConnectionsPerClient(max);
    this.#settings = { ...this.#settings, maxConnectionsPerClient: max };
    this.#broadcast({ t: 'settings', ...this.#settings });
  }

  override setHostHealth(healthy: boolean): void {
    super.setHostHealth(healthy);
    this.#hostHealthy = healthy;
    this.#broadcast({ t: 'host-health', healthy });
  }

  /** A reload changed log_level: workers started from now on, and those running, log at it. */
  setLogLevel(level: LogLevel): void {
    this.#logLevel = level;
    this.#broadcast({ t: 'log-level', level });
  }

  /**
   * `baton upgrade`: the new daemon's workers accept on the same sockets (it
   * was given them, they are listening): every worker here stops accepting,
   * lets what it holds finish (bounded by `deadlineMs`) and exits with a last
   * report; then this process's copies of the sockets close.
   */
  override handOver(deadlineMs: number): { inflight: number; webSockets: number; done: Promise<void> } {
    const sum = this.#sum();
    const inflight = sum.targets.reduce((n, t) => n + t.inflight, 0);
    const webSockets = sum.targets.reduce((n, t) => n + t.websockets, 0);
    // The workers' lines go on being written until the last one has left (the base closes what it holds when its part is done).
    this.#draining = this.detachAccessLog();
    // The metrics listener and the local targets (the base's part).
    const local = super.handOver(deadlineMs);
    this.#closing = true;
    const live = this.#workers.filter((w): w is Worker => w !== null && !w.exited);
    for (const w of live) this.#send(w, { t: 'hand-over', deadlineMs });
    const done = (async () => {
      await Promise.all(live.map((w) => this.#awaitExit(w, deadlineMs + 15_000)));
      this.#releaseSockets();
      await local.done;
      await this.#draining?.close();
    })();
    return { inflight: inflight + local.inflight, webSockets: webSockets + local.webSockets, done };
  }

  /** Every cumulative counter, the workers' included (the dead ones' too): what a successor daemon goes on from. */
  override counterTotals(): CounterTotals {
    const names = new Set([...Object.keys(super.counterTotals().services), ...Object.keys(this.#sum().services)]);
    const services: CounterTotals['services'] = {};
    const routing: CounterTotals['routing'] = {};
    for (const name of names) {
      services[name] = this.counters(name);
      const { heldNow: _h, queuedNow: _q, ...totals } = this.routingCounters(name);
      routing[name] = totals;
    }
    return { services, routing, releases: this.releaseMetrics().map(releaseTotals) };
  }

  /** Every worker stops accepting and finishes what it has (bounded), then the sockets held here close. */
  override close(): Promise<void> {
    this.#closedWorkers ??= (async () => {
      await this.#stopWorkers(15_000);
      this.#releaseSockets();
      await super.close();
    })();
    return this.#closedWorkers;
  }

  async #stopWorkers(graceMs: number): Promise<void> {
    this.#closing = true;
    const live = this.#workers.filter((w): w is Worker => w !== null && !w.exited);
    for (const w of live) this.#send(w, { t: 'close' });
    await Promise.all(live.map((w) => this.#awaitExit(w, graceMs)));
  }

  /** Until the worker is gone; SIGKILL after `graceMs`. */
  async #awaitExit(w: Worker, graceMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([w.exit, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    if (!w.exited) w.child.kill('SIGKILL');
    await w.exit;
  }

  #releaseSockets(): void {
    releaseSockets(this.#sockets.splice(0));
  }
}

function releaseSockets(sockets: HeldSocket[]): void {
  for (const s of sockets) {
    s.unhold();
    if (s.handle !== null) s.handle.close();
    else {
      try {
        closeSync(s.fd);
      } catch {
        // already closed
      }
    }
  }
}
