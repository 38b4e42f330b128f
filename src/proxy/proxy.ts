// The Proxy: public listeners, routing snapshot swaps, target registry, drain/forget and counters.

import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import type * as http from 'node:http';
import type { IncomingMessage } from 'node:http';
import { nodeHttp } from '../core/node-http.ts';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { BatonError, errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { BalancePolicy, UpstreamConfig } from '../config/types.ts';
import type { BetaTokenLedger, CounterTotals, DrainResult, ProxySpec, ReleaseMetrics, RoutingCounters, ServiceCounters, TargetStats, UpstreamTarget } from './types.ts';
import { buildSnapshot, RoutingSnapshot, type ServiceShared } from './snapshot.ts';
import { TargetState } from './target.ts';
import { BatonResponse, type SnapshotRef } from './forwarder.ts';
import { closeSpread, isWebSocketUpgrade } from './websocket.ts';
import { DEFAULT_MAX_CONNECTIONS_PER_CLIENT, DEFAULT_WS_CLOSE_SPREAD_MS } from '../config/defaults.ts';
import { ClientConnections } from './client-cap.ts';
import { MemoryBetaTokenLedger, onCheckContinue, onRequest, onUpgrade, refuseHeld, releaseHeld, type DispatchContext } from './dispatch.ts';
import { PauseQueue } from './pause-queue.ts';
import { Admission, renderShedding } from './admission.ts';
import { NO_RELEASE, ReleaseStats, renderPrometheus } from './metrics.ts';
import { answerPlainFront, listenTls, stopAccepting, type PlainFront, type TlsListener, type TlsListenerOptions } from './listeners.ts';
import { AddressMatcher } from './cidr.ts';
import { setClient } from './client.ts';
import { acceptProxyHeader } from './proxy-protocol.ts';
import { bindListener } from '../core/listen-fds.ts';
import { answerClientError, DEFAULT_REQUEST_LIMITS, type RequestLimits } from './limits.ts';
import { LeanConnections } from './h1/connection.ts';
import { AccessLog, type AccessLineForward, type AccessLogConfig, type AccessLogStats } from './access-log.ts';

/** The proxy's settings that a reload may change (setClientTimeouts, setTrustedProxies); `proxy:` in the config file. */
export interface ProxySettings {
  /** Idle keep-alive client connections are closed after this. */
  clientIdleTimeoutMs: number;
  /** Max time for a client to send the request headers (and a PROXY header). */
  headersTimeoutMs: number;
  /** Networks (CIDR) of the proxies in front: their X-Forwarded-* and Forwarded headers are kept, and only they may send the PROXY protocol. */
  trustedProxies?: readonly string[];
  /** Bounds of a request head (431, 414); defaults: src/config/defaults.ts. */
  limits?: RequestLimits;
  /** Open connections one client address may hold on the plain listeners (trusted proxies are not capped). Default 256. */
  maxConnectionsPerClient?: number;
}

export interface ProxyOptions extends ProxySettings {
  logger: Logger;
  /** Bound on how long close() waits for in-flight requests. Default 10 s. */
  closeTimeoutMs?: number;
  /** Where used beta link tokens are remembered. Default: in memory. */
  betaTokens?: BetaTokenLedger;
  /** Plain requests on the public plain listeners go through baton's own HTTP/1.1 path (src/proxy/h1/). Default true. */
  leanHttp1?: boolean;
}

/** A public listener. */
export interface ListenerSpec {
  host: string;
  port: number;
  /** Every connection starts with a PROXY protocol header (v1 or v2) from a trusted proxy. */
  proxyProtocol?: boolean;
}

/** How long WebSocket peers get to finish the closing handshake after baton's 1001. */
export const WEBSOCKET_CLOSE_GRACE_MS = 1000;
const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;

function zeroCounters(): ServiceCounters {
  return { requests: 0, failed: 0, appErrors: 0, retries: 0, websockets: 0 };
}

function zeroRouting(): RoutingCounters {
  return {
    stable: 0,
    canary: 0,
    overrides: 0,
    fallbacks: 0,
    cookiesSet: 0,
    maintenance: 0,
    held: 0,
    released: 0,
    expired: 0,
    overflowed: 0,
    abandoned: 0,
    heldNow: 0,
    betaLinksAccepted: 0,
    betaLinksRefused: 0,
    queued: 0,
    shed: 0,
    queueTimeouts: 0,
    queuedNow: 0,
  };
}

function listenOn(server: NetServer, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Resolves after `ms`, or earlier through the returned cancel function. */
function delay(ms: number): { promise: Promise<void>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  let done!: () => void;
  const promise = new Promise<void>((resolve) => {
    done = resolve;
    timer = setTimeout(resolve, Math.max(0, ms));
  });
  return {
    promise,
    cancel: () => {
      clearTimeout(timer);
      done();
    },
  };
}

function trustedMatcher(cidrs: readonly string[]): AddressMatcher | null {
  return cidrs.length === 0 ? null : new AddressMatcher(cidrs, 'proxy.trusted_proxies');
}

export class Proxy {
  readonly #logger: Logger;
  readonly #closeTimeoutMs: number;
  #settings: ProxySettings;
  /** Trusted proxies (null: none); connections accepted from now on use it. */
  #trusted: AddressMatcher | null;
  readonly #ref: SnapshotRef = { current: new RoutingSnapshot(new Map(), new Map(), null) };
  /** Every target known: in the current snapshot, or draining until forget(). */
  readonly #targets = new Map<string, TargetState>();
  readonly #counters = new Map<string, ServiceCounters>();
  /** Per service: what outlives snapshots (counters, rotations, pause queue). */
  readonly #shared = new Map<string, ServiceShared>();
  /** service → release → metrics. */
  readonly #releaseStats = new Map<string, Map<string, ReleaseStats>>();
  readonly #servers: http.Server<typeof IncomingMessage, typeof BatonResponse>[] = [];
  readonly #metricsServers: http.Server[] = [];
  readonly #ctx: DispatchContext;
  /** Per service: over how much of the end of a drain its WebSockets are closed (from the last spec applied). */
  readonly #wsCloseSpread = new Map<string, number>();
  readonly #tlsListeners: TlsListener[] = [];
  /** What plain listeners answer before routing when TLS is on (ACME challenges, redirect). */
  #front: PlainFront | null = null;
  /** Open connections per client address on the plain listeners. */
  readonly #clients: ClientConnections;
  #closing = false;
  #closed: Promise<void> | null = null;
  /** baton's own HTTP/1.1 path on the public plain listeners (ProxyOptions.leanHttp1). */
  readonly #leanHttp1: boolean;
  readonly #lean: LeanConnections[] = [];

  constructor(opts: ProxyOptions) {
    this.#closeTimeoutMs = opts.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    const limits = opts.limits ?? DEFAULT_REQUEST_LIMITS;
    this.#settings = { clientIdleTimeoutMs: opts.clientIdleTimeoutMs, headersTimeoutMs: opts.headersTimeoutMs, trustedProxies: opts.trustedProxies ?? [], limits };
    this.#trusted = trustedMatcher(this.#settings.trustedProxies!);
    this.#clients = new ClientConnections(opts.maxConnectionsPerClient ?? DEFAULT_MAX_CONNECTIONS_PER_CLIENT);
    this.#logger = opts.logger;
    this.#leanHttp1 = opts.leanHttp1 ?? true;
    this.#ctx = { logger: opts.logger, hostHealthy: true, closing: false, betaTokens: opts.betaTokens ?? new MemoryBetaTokenLedger(), limits, accessLog: null };
  }

  /**
   * New trusted proxy networks (a reload): connections accepted from now on are
   * judged by them. Throws CONFIG_INVALID (and changes nothing) for a malformed network.
   */
  setTrustedProxies(cidrs: readonly string[]): void {
    this.#trusted = trustedMatcher(cidrs);
    this.#settings = { ...this.#settings, trustedProxies: [...cidrs] };
  }

  /** Bind the public listeners (port 0 allowed); returns the bound addresses in the same order. */
  async listen(listeners: ListenerSpec[]): Promise<{ host: string; port: number }[]> {
    const bound: { host: string; port: number }[] = [];
    const started: http.Server<typeof IncomingMessage, typeof BatonResponse>[] = [];
    try {
      for (const l of listeners) {
        if (l.proxyProtocol === true && this.#trusted === null) {
          throw new BatonError('CONFIG_INVALID', `listener ${l.host}:${l.port} requires the PROXY protocol, which is accepted only from trusted proxies, and none are set`);
        }
        const server = this.#createServer();
        this.#identifyClients(server, l.proxyProtocol === true);
        started.push(server);
        await bindListener(server, 'public', l.host, l.port);
        const addr = server.address() as AddressInfo;
        bound.push({ host: addr.address, port: addr.port });
      }
    } catch (err) {
      for (const s of started) s.close();
      if (err instanceof BatonError) throw err;
      throw new BatonError('LISTEN_FAILED', `cannot listen on ${listeners.map((l) => `${l.host}:${l.port}`).join(', ')}: ${errorMessage(err)}`);
    }
    this.#servers.push(...started);
    for (const b of bound) this.#logger.info('proxy listening', { host: b.host, port: b.port });
    return bound;
  }

  /**
   * Decide who each accepted connection's client is before node:http sees a
   * byte: its peer (trusted or not), or, on a PROXY protocol listener, the
   * client a trusted peer's header names.
   */
  #identifyClients(server: http.Server<typeof IncomingMessage, typeof BatonResponse>, proxyProtocol: boolean): void {
    // node:http's own connection handler runs once the client is known and admitted (and only then).
    const httpHandlers = server.listeners('connection') as ((socket: Socket) => void)[];
    server.removeAllListeners('connection');
    const nodeHttpTakes = (socket: Socket): void => {
      for (const h of httpHandlers) h.call(server, socket);
    };
    const lean = this.#leanHttp1 ? this.#leanConnections(server, nodeHttpTakes) : null;
    // baton's own HTTP/1.1 path serves the connection, or node:http does from the start (it would hand every request over).
    const serve = (socket: Socket, first: Buffer | null): void => {
      if (lean !== null && !this.#leanBypass()) {
        // Read into the shared buffer from now on (h1/shared-reads.ts).
        lean.accept(socket, first, true);
        return;
      }
      nodeHttpTakes(socket);
      if (first !== null && first.length > 0) socket.emit('data', first);
    };
    if (!proxyProtocol) {
      server.on('connection', (socket: Socket) => {
        const address = socket.remoteAddress ?? '';
        const trusted = this.#trusted !== null && this.#trusted.matches(address);
        if (!trusted && !this.#clients.admit(socket, address)) return;
        setClient(socket, { address, proto: 'http', trusted });
        serve(socket, null);
      });
      return;
    }
    server.on('connection', (socket: Socket) => {
      const peer = socket.remoteAddress ?? '';
      const trusted = this.#trusted;
      if (trusted === null || !trusted.matches(peer)) {
        this.#logger.warn('proxy: PROXY protocol connection from an untrusted peer closed', { peer });
        socket.on('error', () => undefined);
        socket.destroy();
        return;
      }
      acceptProxyHeader(
        socket,
        this.#settings.headersTimeoutMs,
        (header, rest) => {
          const address = header.source ?? peer;
          // A header without an address (LOCAL: the balancer's own health check) is the balancer itself, not capped.
          if (header.source !== null && !this.#clients.admit(socket, address)) return;
          // The balancer passed the client's bytes through: the client's own headers are trusted only if it is.
          setClient(socket, { address, proto: header.tls ? 'https' : 'http', trusted: trusted.matches(address) });
          serve(socket, rest);
        },
        (reason) => this.#logger.warn('proxy: connection without a valid PROXY header closed', { peer, reason }),
      );
    });
  }

  /** The lean connections of a public plain listener (src/proxy/h1/), kept so that closing reaches them. */
  #leanConnections(server: http.Server<typeof IncomingMessage, typeof BatonResponse>, nodeHttpTakes: (socket: Socket) => void): LeanConnections {
    const lean = new LeanConnections({
      ref: this.#ref,
      limits: () => this.#ctx.limits,
      closing: () => this.#ctx.closing || !server.listening,
      bypass: () => this.#leanBypass(),
      accessLog: () => this.#ctx.accessLog,
      extraLines: '',
      timeouts: () => this.#settings,
      handOff: nodeHttpTakes,
    });
    this.#lean.push(lean);
    return lean;
  }

  /** Requests that must go through node:http whatever they are: the plain front of the TLS listeners answers first. */
  #leanBypass(): boolean {
    return this.#front !== null;
  }

  /** Bind HTTPS listeners (HTTP/2 by ALPN when asked) routing through the same snapshot; returns the bound addresses. */
  async listenTls(listeners: ListenerSpec[], opts: TlsListenerOptions): Promise<{ host: string; port: number }[]> {
    const started: TlsListener[] = [];
    try {
      for (const l of listeners) {
        if (l.proxyProtocol === true && this.#trusted === null) {
          throw new BatonError('CONFIG_INVALID', `TLS listener ${l.host}:${l.port} requires the PROXY protocol, which is accepted only from trusted proxies, and none are set`);
        }
        const policy = { trusted: () => this.#trusted, proxyProtocol: l.proxyProtocol === true };
        started.push(await listenTls(this.#ctx, this.#ref, this.#settings, opts, policy, l.host, l.port, this.#leanHttp1));
      }
    } catch (err) {
      await Promise.all(started.map((s) => s.close()));
      if (err instanceof BatonError) throw err;
      throw new BatonError('LISTEN_FAILED', `cannot listen on ${listeners.map((l) => `${l.host}:${l.port}`).join(', ')}: ${errorMessage(err)}`);
    }
    this.#tlsListeners.push(...started);
    const bound = started.map((s) => ({ host: s.address.address, port: s.address.port }));
    for (const b of bound) this.#logger.info('proxy listening (TLS)', { host: b.host, port: b.port, http2: opts.http2 });
    return bound;
  }

  /** ACME challenges and the redirect to HTTPS on the plain listeners (null: plain requests are routed as usual). */
  setPlainFront(front: PlainFront | null): void {
    this.#front = front;
  }

  #createServer(ref: SnapshotRef = this.#ref, isPublic = true): http.Server<typeof IncomingMessage, typeof BatonResponse> {
    const { clientIdleTimeoutMs, headersTimeoutMs } = this.#settings;
    const { maxHeaderSize } = this.#ctx.limits;
    const ctx = this.#ctx;
    // The hot path: one snapshot read, no awaits before the target is chosen.
    const handler = (req: IncomingMessage, res: BatonResponse): void => {
      const front = isPublic ? this.#front : null;
      if (front !== null && answerPlainFront(front, req, res)) return;
      onRequest(ctx, ref, req, res);
    };
    const server = nodeHttp.createServer<typeof IncomingMessage, typeof BatonResponse>(
      {
        ServerResponse: BatonResponse,
        keepAliveTimeout: clientIdleTimeoutMs,
        headersTimeout: headersTimeoutMs,
        // No limit on the whole request: a large upload may take long. Headers are bounded above.
        requestTimeout: 0,
        // Node checks the headers timeout on this tick; its 30 s default would make it imprecise.
        connectionsCheckingInterval: Math.max(100, Math.min(1000, headersTimeoutMs)),
        shouldUpgradeCallback: isWebSocketUpgrade,
        optimizeEmptyRequests: true,
        noDelay: true,
        // Read for each connection when it is accepted (setRequestLimits changes it for new ones).
        maxHeaderSize,
      },
      handler,
    );
    // Every field is kept and counted (limits.ts): Node's default (2000) would drop the rest silently.
    server.maxHeadersCount = 0;
    // Malformed requests: answered 400/408/431 (baton's pages, as Node's default
    // does with empty ones) with Connection: close when no response is in
    // progress, and the connection is never reused; llhttp runs in strict mode
    // (insecureHTTPParser stays off).
    server.on('clientError', answerClientError);
    server.on('checkContinue', (req: IncomingMessage, res: BatonResponse) => onCheckContinue(ref, req, res, handler));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => onUpgrade(ctx, ref, req, socket as Socket, head));
    return server;
  }

  /**
   * A private preview of instances not yet in service (for smoke tests): a
   * listener on 127.0.0.1 with a port of its own that routes every request, whatever
   * its Host, to `targets` only. Its traffic is counted apart (`<service>.preview`).
   */
  async openPreview(service: string, targets: UpstreamTarget[], balance: BalancePolicy, upstream: UpstreamConfig): Promise<{ url: string; close(): Promise<void> }> {
    const name = `${service}.preview`;
    const shared = this.#newShared(name);
    const ref: SnapshotRef = {
      current: buildSnapshot(
        { services: [{ name: service, hosts: [], isDefault: true, balance, upstream, targets }] },
        {
          target: (t, svc, up) => this.#targetFor(t, svc, up),
          shared: () => shared,
        },
      ),
    };
    this.#counters.set(name, shared.counters);
    const server = this.#createServer(ref, false);
    await listenOn(server, '127.0.0.1', 0);
    const { port } = server.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      close: () => closeNow(server),
    };
  }

  /** Build a new immutable routing snapshot from the spec and swap it in (synchronous). */
  apply(spec: ProxySpec): void {
    const seen = new Set<string>();
    const snapshot = buildSnapshot(spec, {
      target: (t, service, upstream) => {
        seen.add(t.id);
        return this.#targetFor(t, service, upstream);
      },
      shared: (name) => this.#sharedFor(name),
    });
    this.#ref.current = snapshot;
    for (const svc of spec.services) if (svc.wsCloseSpreadMs !== undefined) this.#wsCloseSpread.set(svc.name, svc.wsCloseSpreadMs);
    for (const t of this.#targets.values()) t.inService = seen.has(t.id);
    // The cap each service has now (a raised or removed one admits waiting requests at once).
    for (const [name, shared] of this.#shared) shared.admission.configure(snapshot.services.get(name)?.inflightCap ?? null);
    // A pause that ended (or a service that went away): its held requests go on, in order, through the new snapshot.
    for (const [name, shared] of this.#shared) {
      if (shared.queue.size === 0) continue;
      const route = snapshot.services.get(name);
      if (route === undefined || route.pause === null) releaseHeld(this.#logger, shared.queue, shared.routing);
    }
  }

  #newShared(name: string): ServiceShared {
    return {
      counters: zeroCounters(),
      routing: zeroRouting(),
      rotation: { next: 0 },
      canaryRotation: { next: 0 },
      queue: new PauseQueue(),
      admission: new Admission(),
      noRelease: this.#statsFor(name, NO_RELEASE),
    };
  }

  #sharedFor(service: string): ServiceShared {
    let s = this.#shared.get(service);
    if (s === undefined) {
      s = this.#newShared(service);
      this.#counters.set(service, s.counters);
      this.#shared.set(service, s);
    }
    return s;
  }

  #statsFor(service: string, release: string): ReleaseStats {
    let byRelease = this.#releaseStats.get(service);
    if (byRelease === undefined) this.#releaseStats.set(service, (byRelease = new Map()));
    let s = byRelease.get(release);
    if (s === undefined) byRelease.set(release, (s = new ReleaseStats(service, release)));
    return s;
  }

  #targetFor(t: UpstreamTarget, service: string, upstream: UpstreamConfig): TargetState {
    const known = this.#targets.get(t.id);
    if (known !== undefined && known.sameAddress(t) && known.service === service && known.release === t.release) {
      known.updateUpstream(upstream);
      known.weight = t.weight ?? 1;
      return known;
    }
    if (known !== undefined) {
      // An id reused for another address or service: the old state can only finish what it runs.
      this.#logger.warn('proxy: target id now names another instance', { target: t.id, port: t.port, previousPort: known.port });
      known.close().catch(() => undefined);
    }
    const state = new TargetState(t, service, upstream, this.#statsFor(service, t.release));
    this.#targets.set(t.id, state);
    return state;
  }

  /**
   * For a target absent from the current snapshot: resolve when it has no
   * in-flight request and no open WebSocket, or at the deadline (ms from now).
   * WebSockets still open when the last `ws_close_spread` of the drain begins
   * are closed with 1001 at frame boundaries one at a time over it, oldest
   * first (not all at the deadline: their clients would all reconnect in the
   * same second); at the deadline what is left is closed, each given ~1 s to
   * finish the closing handshake, then destroyed.
   * An abort before the deadline (the target goes back into service: a rollback
   * to instances still draining) ends the wait and closes nothing.
   */
  async drain(targetId: string, deadlineMs: number, signal?: AbortSignal): Promise<DrainResult> {
    const started = performance.now();
    const t = this.#targets.get(targetId);
    if (t === undefined) return { abandonedRequests: 0, closedWebSockets: 0, durationMs: 0 };
    if (t.inService) this.#logger.warn('proxy: draining a target still in service', { target: targetId });
    const spreadMs = Math.min(Math.max(0, deadlineMs), this.#wsCloseSpread.get(t.service) ?? DEFAULT_WS_CLOSE_SPREAD_MS);
    let onAbort = (): void => {};
    const aborted = new Promise<void>((resolve) => (onAbort = resolve));
    signal?.addEventListener('abort', onAbort, { once: true });
    let spread: ReturnType<typeof closeSpread> | null = null;
    try {
      if (!t.idle) {
        // Until idle, or until the last `spreadMs` of the drain begins.
        const opens = delay(deadlineMs - spreadMs);
        await Promise.race([t.whenIdle(), opens.promise, aborted]);
        opens.cancel();
      }
      if (!t.idle && !signal?.aborted) {
        // The WebSockets left close one by one over the rest; requests in flight keep until the deadline.
        const rest = deadlineMs - (performance.now() - started);
        if (t.tunnels.size > 0 && spreadMs > 0) spread = closeSpread([...t.tunnels], rest, WEBSOCKET_CLOSE_GRACE_MS, (x) => t.tunnels.has(x));
        const deadline = delay(rest);
        await Promise.race([t.whenIdle(), deadline.promise, aborted]);
        deadline.cancel();
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    spread?.stop();
    if (signal?.aborted) {
      // Taken back into service: what was not closed yet stays open.
      const closed = spread === null ? 0 : await spread.done;
      return { abandonedRequests: 0, closedWebSockets: closed, durationMs: Math.round(performance.now() - started), cancelled: true };
    }
    const abandonedRequests = t.inflight;
    const left = [...t.tunnels].filter((x) => spread === null || !spread.closed.has(x));
    const [spreadClosed] = await Promise.all([spread === null ? 0 : spread.done, ...left.map((x) => x.goAway(WEBSOCKET_CLOSE_GRACE_MS))]);
    const result = { abandonedRequests, closedWebSockets: spreadClosed + left.length, durationMs: Math.round(performance.now() - started) };
    this.#logger.debug('proxy: target drained', { target: targetId, ...result });
    return result;
  }

  /** The target will never be used again: close its upstream pool (after in-flight finish). */
  async forget(targetId: string): Promise<void> {
    const t = this.#targets.get(targetId);
    if (t === undefined) return;
    if (t.inService) {
      // Closing a pool the snapshot still routes to would fail requests: refuse, loudly.
      this.#logger.warn('proxy: forget() ignored for a target still in service', { target: targetId });
      return;
    }
    this.#targets.delete(targetId);
    // The release's figures go with its last instance: /metrics and status name
    // only releases with instances (label cardinality stays bounded however
    // many deploys), and a release that comes back (rollback to a stopped
    // release) starts again from zero, which Prometheus reads as a new series.
    if (![...this.#targets.values()].some((o) => o.service === t.service && o.release === t.release)) this.#releaseStats.get(t.service)?.delete(t.release);
    await t.close();
  }

  /** Every cumulative counter, for a successor daemon (`baton upgrade`): the totals go on there. */
  counterTotals(): CounterTotals {
    const services: CounterTotals['services'] = {};
    for (const [name, c] of this.#counters) services[name] = { ...c };
    const routing: CounterTotals['routing'] = {};
    for (const [name, s] of this.#shared) {
      const { heldNow: _held, queuedNow: _queued, ...rest } = { ...s.routing, heldNow: 0, queuedNow: 0 };
      routing[name] = rest;
    }
    const releases: CounterTotals['releases'] = [];
    for (const [service, byRelease] of this.#releaseStats) for (const [release, st] of byRelease) releases.push({ service, release, ...st.totals() });
    return { services, routing, releases };
  }

  /** Add a predecessor's totals (`baton upgrade`): counters continue instead of starting again from zero. */
  addCounterTotals(t: CounterTotals): void {
    for (const [name, c] of Object.entries(t.services ?? {})) {
      const mine = this.#sharedFor(name).counters;
      for (const k of Object.keys(mine) as (keyof ServiceCounters)[]) if (Number.isFinite(c[k])) mine[k] += c[k];
    }
    for (const [name, r] of Object.entries(t.routing ?? {})) {
      const mine = this.#sharedFor(name).routing;
      for (const k of Object.keys(r) as (keyof typeof r)[]) if (k in mine && Number.isFinite(r[k])) mine[k] += r[k];
    }
    for (const x of t.releases ?? []) this.#statsFor(x.service, x.release).addTotals(x);
  }

  /** Counters of a service since the proxy started; zeros for an unknown service. */
  counters(service: string): ServiceCounters {
    const c = this.#counters.get(service);
    return c === undefined ? zeroCounters() : { ...c };
  }

  /** How the canary split, maintenance and pause routed a service's traffic; zeros for an unknown service. */
  routingCounters(service: string): RoutingCounters {
    const s = this.#shared.get(service);
    if (s === undefined) return zeroRouting();
    return { ...s.routing, heldNow: s.queue.size, queuedNow: s.admission.queued };
  }

  /**
   * Cumulative metrics per release (copies), of one service or all, sorted by
   * service then release. Requests that reached no release are under release "-".
   */
  releaseMetrics(service?: string): ReleaseMetrics[] {
    const out: ReleaseMetrics[] = [];
    const services = service === undefined ? [...this.#releaseStats.keys()].sort() : [service];
    for (const name of services) {
      const byRelease = this.#releaseStats.get(name);
      if (byRelease === undefined) continue;
      for (const r of [...byRelease.keys()].sort()) out.push(byRelease.get(r)!.snapshot());
    }
    return out;
  }

  /** The Prometheus text exposition of releaseMetrics(), the held-request gauges and the in-flight caps' queues. */
  prometheusText(): string {
    const held = [...this.#shared.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([service, s]) => ({ service, held: s.queue.size }));
    // The process's own resident memory, under the name Prometheus clients use for it:
    // what the daemon holds is measured where it is held, never from outside.
    const rss = '# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\n' +
      `process_resident_memory_bytes ${process.memoryUsage.rss()}\n`;
    const shedding = [...this.#shared.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([service, s]) => ({ service, routing: s.routing, queued: s.admission.queued }));
    return renderPrometheus(this.releaseMetrics(), held) + renderShedding(shedding) + rss;
  }

  /**
   * A separate HTTP listener serving GET /metrics (Prometheus text format; 404
   * elsewhere). Returns the bound address; closed by close().
   */
  async listenMetrics(host: string, port: number): Promise<{ host: string; port: number }> {
    const server = nodeHttp.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
        const body = Buffer.from(this.prometheusText());
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': body.length, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('not found\n');
      }
    });
    server.keepAliveTimeout = 5000;
    try {
      await bindListener(server, 'metrics', host, port);
    } catch (err) {
      throw new BatonError('LISTEN_FAILED', `cannot listen for metrics on ${host}:${port}: ${errorMessage(err)}`);
    }
    if (this.#closing) {
      server.close();
      throw new BatonError('LISTEN_FAILED', 'the proxy is closing');
    }
    this.#metricsServers.push(server);
    const addr = server.address() as AddressInfo;
    this.#logger.info('metrics listening', { host: addr.address, port: addr.port });
    return { host: addr.address, port: addr.port };
  }

  /**
   * Move the metrics listener (a reload changed metrics_listen): bind `to` first
   * (null: none), then close the previous one. If `to` cannot be bound, nothing changes.
   */
  async moveMetrics(to: { host: string; port: number } | null): Promise<{ host: string; port: number } | null> {
    const previous = this.#metricsServers.splice(0);
    let bound: { host: string; port: number } | null = null;
    try {
      if (to !== null) bound = await this.listenMetrics(to.host, to.port);
    } catch (err) {
      this.#metricsServers.unshift(...previous);
      throw err;
    }
    await Promise.all(previous.map(closeNow));
    return bound;
  }

  /**
   * New client timeouts for the public listeners (a reload): they apply to every
   * connection from its next request or idle period on, including those already open.
   */
  setClientTimeouts(t: { clientIdleTimeoutMs: number; headersTimeoutMs: number }): void {
    this.#settings = { ...this.#settings, ...t };
    for (const server of this.#servers) {
      // Node reads both on every use (keep-alive idle timer, periodic headers check).
      server.keepAliveTimeout = t.clientIdleTimeoutMs;
      server.headersTimeout = t.headersTimeoutMs;
    }
  }

  /**
   * New bounds of a request head (a reload): the URL length and the count of
   * fields apply to the next request; the head's size (the parser's bound) to
   * connections accepted from now on.
   */
  setRequestLimits(limits: RequestLimits): void {
    this.#settings = { ...this.#settings, limits };
    this.#ctx.limits = limits;
    // Node reads it when it accepts a connection (a plain property, not in its typings).
    for (const server of this.#servers) (server as unknown as { maxHeaderSize: number }).maxHeaderSize = limits.maxHeaderSize;
    for (const l of this.#tlsListeners) l.setMaxHeaderSize(limits.maxHeaderSize);
  }

  /**
   * proxy.access_log (start-up, a reload): null turns it off; the same settings
   * reopen the file (an outside rotation may have moved it away), others
   * replace it. Lines buffered for the old file are flushed to it. A proxy
   * worker passes `forward`: its lines go to the control plane, which writes them.
   */
  async setAccessLog(cfg: AccessLogConfig | null, forward: AccessLineForward | null = null): Promise<void> {
    const old = this.#ctx.accessLog;
    if (old !== null && cfg !== null && sameAccessLog(old.config, cfg)) {
      old.reopen();
      return;
    }
    this.#ctx.accessLog = cfg === null ? null : new AccessLog(cfg, this.#logger, forward);
    await old?.close();
  }

  /**
   * Take the access log out of this proxy (its own exchanges are no longer
   * logged, and closing leaves it open): the proxy workers' control plane
   * keeps writing its draining workers' lines after its own part handed over.
   */
  detachAccessLog(): AccessLog | null {
    const log = this.#ctx.accessLog;
    this.#ctx.accessLog = null;
    return log;
  }

  /** A proxy worker's batch of access log lines (`count` whole lines), written by this process's access log; nothing when it is off. */
  writeAccessLines(text: string, count: number): void {
    this.#ctx.accessLog?.writeLines(text, count);
  }

  /** Lines written and dropped by the access log, or null when it is off. */
  accessLogStats(): AccessLogStats | null {
    return this.#ctx.accessLog?.stats() ?? null;
  }

  /** A new cap on connections per client address (a reload): connections accepted from now on are judged by it. */
  setMaxConnectionsPerClient(max: number): void {
    this.#clients.setMax(max);
  }

  /** Connections open now from a client address on the plain listeners, and those refused by the cap since start. */
  clientConnections(address: string): { open: number; refusedTotal: number } {
    return { open: this.#clients.openFrom(address), refusedTotal: this.#clients.refused };
  }

  /** What GET /_baton/health answers: true → 200 "ok", false → 503 "draining" (take this host out of a load balancer). */
  setHostHealth(healthy: boolean): void {
    this.#ctx.hostHealthy = healthy;
  }

  get hostHealthy(): boolean {
    return this.#ctx.hostHealthy;
  }

  /** Every target known (in service or draining). */
  targets(): TargetStats[] {
    return [...this.#targets.values()].map((t) => t.stats());
  }

  /** Stop accepting, close idle client connections, wait (bounded) for in-flight, close pools. */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  /**
   * A successor daemon accepts on the same listening sockets now (`baton
   * upgrade`): stop accepting here (only this process's copies of the sockets
   * close; what the kernel has queued stays for the successor), answer what
   * still arrives on open connections with Connection: close, let in-flight
   * requests finish and WebSocket tunnels run until they end or `deadlineMs`
   * from now; then close the tunnels left with 1001, cut what remains and close
   * the upstream pools (`done`). Returns what was open when it started.
   */
  handOver(deadlineMs: number): { inflight: number; webSockets: number; done: Promise<void> } {
    this.#closing = true;
    this.#ctx.closing = true;
    const targets = [...this.#targets.values()];
    const inflight = targets.reduce((n, t) => n + t.inflight, 0);
    const webSockets = targets.reduce((n, t) => n + t.tunnels.size, 0);
    this.#closed ??= this.#handOver(targets, deadlineMs);
    return { inflight, webSockets, done: this.#closed };
  }

  async #handOver(targets: TargetState[], deadlineMs: number): Promise<void> {
    const metricsClosed = this.#metricsServers.splice(0).map(closeNow);
    const servers = this.#servers.splice(0);
    const tlsListeners = this.#tlsListeners.splice(0);
    const started = performance.now();
    const gone = Promise.all([...servers.map((s) => stopAccepting(s)), ...tlsListeners.map((l) => l.stopAccepting())]);
    // WebSockets still open over the last part of the deadline are closed one at a time (ws_close_spread).
    const spreadMs = Math.min(deadlineMs, Math.max(0, ...targets.map((t) => this.#wsCloseSpread.get(t.service) ?? DEFAULT_WS_CLOSE_SPREAD_MS)));
    const opens = delay(deadlineMs - spreadMs);
    await Promise.race([gone, opens.promise]);
    opens.cancel();
    const rest = deadlineMs - (performance.now() - started);
    const tunnels = targets.flatMap((t) => [...t.tunnels].map((x) => ({ x, t })));
    const owner = new Map(tunnels.map((o) => [o.x, o.t]));
    const spread = rest > 0 && tunnels.length > 0 ? closeSpread(tunnels.map((o) => o.x), rest, WEBSOCKET_CLOSE_GRACE_MS, (x) => owner.get(x)?.tunnels.has(x) === true) : null;
    const bound = delay(rest);
    await Promise.race([gone, bound.promise]);
    bound.cancel();
    spread?.stop();
    await Promise.all([spread?.done, ...targets.flatMap((t) => [...t.tunnels].map((x) => x.goAway(WEBSOCKET_CLOSE_GRACE_MS)))]);
    for (const s of servers) s.closeAllConnections();
    for (const l of this.#lean) l.closeAll();
    for (const l of tlsListeners) l.closeAll();
    await Promise.all(metricsClosed);
    await Promise.all(targets.map((t) => t.destroy()));
    this.#targets.clear();
    await this.#ctx.accessLog?.close();
  }

  async #close(): Promise<void> {
    this.#closing = true;
    this.#ctx.closing = true;
    for (const shared of this.#shared.values()) refuseHeld(shared);
    for (const shared of this.#shared.values()) shared.admission.refuseAll((name) => this.#ref.current.services.get(name));
    const metricsClosed = this.#metricsServers.splice(0).map(closeNow);
    const servers = this.#servers.splice(0);
    const tlsListeners = this.#tlsListeners.splice(0);
    const closed = [...servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))), ...tlsListeners.map((l) => l.close())];
    for (const s of servers) s.closeIdleConnections();
    for (const l of this.#lean) l.closeIdle();
    const targets = [...this.#targets.values()];
    const bound = delay(this.#closeTimeoutMs);
    const tunnelsClosed = Promise.all(targets.flatMap((t) => [...t.tunnels].map((x) => x.goAway(WEBSOCKET_CLOSE_GRACE_MS))));
    await Promise.race([Promise.all([tunnelsClosed, ...targets.map((t) => t.whenIdle())]), bound.promise]);
    bound.cancel();
    for (const s of servers) s.closeAllConnections();
    for (const l of this.#lean) l.closeAll();
    for (const l of tlsListeners) l.closeAll();
    await Promise.all([...closed, ...metricsClosed]);
    await Promise.all(targets.map((t) => t.destroy()));
    this.#targets.clear();
    await this.#ctx.accessLog?.close();
  }
}

function sameAccessLog(a: AccessLogConfig, b: AccessLogConfig): boolean {
  return a.path === b.path && a.maxBytes === b.maxBytes && a.keep === b.keep;
}

/** Stop listening and cut every connection at once: for listeners whose clients retry (metrics scrapes, the smoke hook's preview). */
function closeNow(server: http.Server<typeof IncomingMessage, typeof BatonResponse> | http.Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  return closed;
}
