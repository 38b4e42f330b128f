// The Proxy: public listeners, routing snapshot swaps, target registry, drain/forget and counters.

import http, { type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { BatonError, errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { BalancePolicy, UpstreamConfig } from '../config/types.ts';
import type { DrainResult, ProxySpec, ServiceCounters, TargetStats, UpstreamTarget } from './types.ts';
import type { Rotation } from './balancer.ts';
import { buildSnapshot, RoutingSnapshot } from './snapshot.ts';
import { TargetState } from './target.ts';
import { BatonResponse, forward, type SnapshotRef } from './forwarder.ts';
import { sendErrorPage } from './error-page.ts';
import { handleUpgrade, isWebSocketUpgrade } from './websocket.ts';

export interface ProxyOptions {
  logger: Logger;
  /** Idle keep-alive client connections are closed after this. */
  clientIdleTimeoutMs: number;
  /** Max time for a client to send the request headers. */
  headersTimeoutMs: number;
  /** Bound on how long close() waits for in-flight requests. Default 10 s. */
  closeTimeoutMs?: number;
}

/** How long WebSocket peers get to finish the closing handshake after baton's 1001. */
export const WEBSOCKET_CLOSE_GRACE_MS = 1000;
const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;

function zeroCounters(): ServiceCounters {
  return { requests: 0, failed: 0, retries: 0, websockets: 0 };
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

export class Proxy {
  readonly #logger: Logger;
  readonly #opts: ProxyOptions;
  readonly #ref: SnapshotRef = { current: new RoutingSnapshot(new Map(), new Map(), null) };
  /** Every target known: in the current snapshot, or draining until forget(). */
  readonly #targets = new Map<string, TargetState>();
  readonly #counters = new Map<string, ServiceCounters>();
  readonly #rotations = new Map<string, Rotation>();
  readonly #servers: http.Server<typeof IncomingMessage, typeof BatonResponse>[] = [];
  #closing = false;
  #closed: Promise<void> | null = null;

  constructor(opts: ProxyOptions) {
    this.#opts = opts;
    this.#logger = opts.logger;
  }

  /** Bind the public listeners (port 0 allowed); returns the bound addresses in the same order. */
  async listen(listeners: { host: string; port: number }[]): Promise<{ host: string; port: number }[]> {
    const bound: { host: string; port: number }[] = [];
    const started: http.Server<typeof IncomingMessage, typeof BatonResponse>[] = [];
    try {
      for (const l of listeners) {
        const server = this.#createServer();
        started.push(server);
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(l.port, l.host, () => {
            server.off('error', reject);
            resolve();
          });
        });
        const addr = server.address() as AddressInfo;
        bound.push({ host: addr.address, port: addr.port });
      }
    } catch (err) {
      for (const s of started) s.close();
      throw new BatonError('LISTEN_FAILED', `cannot listen on ${listeners.map((l) => `${l.host}:${l.port}`).join(', ')}: ${errorMessage(err)}`);
    }
    this.#servers.push(...started);
    for (const b of bound) this.#logger.info('proxy listening', { host: b.host, port: b.port });
    return bound;
  }

  #createServer(ref: SnapshotRef = this.#ref): http.Server<typeof IncomingMessage, typeof BatonResponse> {
    const { clientIdleTimeoutMs, headersTimeoutMs } = this.#opts;
    // The hot path: one snapshot read, no awaits before the target is chosen.
    const onRequest = (req: IncomingMessage, res: BatonResponse): void => {
      const route = ref.current.route(req.headers.host);
      if (this.#closing) res.shouldKeepAlive = false;
      if (route === null) {
        sendErrorPage(res, 'no_route', req.headers.accept, false);
        return;
      }
      forward(req, res, route, ref);
    };
    const server = http.createServer<typeof IncomingMessage, typeof BatonResponse>(
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
      },
      onRequest,
    );
    // Malformed requests: Node's default 'clientError' handling answers 400/408/431
    // with Connection: close when no response is in progress, and never reuses the
    // connection; llhttp runs in strict mode (insecureHTTPParser stays off).
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => handleUpgrade(req, socket, head, ref, this.#logger));
    return server;
  }

  /**
   * A private preview of instances not yet in service (for smoke tests): a
   * listener on 127.0.0.1 with a port of its own that routes every request, whatever
   * its Host, to `targets` only. Its traffic is counted apart (`<service>.preview`).
   */
  async openPreview(service: string, targets: UpstreamTarget[], balance: BalancePolicy, upstream: UpstreamConfig): Promise<{ url: string; close(): Promise<void> }> {
    const counters = zeroCounters();
    const rotation: Rotation = { next: 0 };
    const ref: SnapshotRef = {
      current: buildSnapshot(
        { services: [{ name: service, hosts: [], isDefault: true, balance, upstream, targets }] },
        {
          target: (t, name, up) => this.#targetFor(t, name, up),
          counters: () => counters,
          rotation: () => rotation,
        },
      ),
    };
    this.#counters.set(`${service}.preview`, counters);
    const server = this.#createServer(ref);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
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
      counters: (name) => this.#countersFor(name),
      rotation: (name) => {
        let r = this.#rotations.get(name);
        if (r === undefined) this.#rotations.set(name, (r = { next: 0 }));
        return r;
      },
    });
    this.#ref.current = snapshot;
    for (const t of this.#targets.values()) t.inService = seen.has(t.id);
  }

  #targetFor(t: UpstreamTarget, service: string, upstream: UpstreamConfig): TargetState {
    const known = this.#targets.get(t.id);
    if (known !== undefined && known.sameAddress(t) && known.service === service) {
      known.updateUpstream(upstream);
      return known;
    }
    if (known !== undefined) {
      // An id reused for another address or service: the old state can only finish what it runs.
      this.#logger.warn('proxy: target id now names another instance', { target: t.id, port: t.port, previousPort: known.port });
      known.close().catch(() => undefined);
    }
    const state = new TargetState(t, service, upstream);
    this.#targets.set(t.id, state);
    return state;
  }

  #countersFor(service: string): ServiceCounters {
    let c = this.#counters.get(service);
    if (c === undefined) this.#counters.set(service, (c = zeroCounters()));
    return c;
  }

  /**
   * For a target absent from the current snapshot: resolve when it has no
   * in-flight request and no open WebSocket, or at the deadline (ms from now);
   * then close its WebSockets with 1001 at frame boundaries, give them
   * ~1 s to finish the closing handshake, destroy what remains, and resolve.
   */
  async drain(targetId: string, deadlineMs: number): Promise<DrainResult> {
    const started = performance.now();
    const t = this.#targets.get(targetId);
    if (t === undefined) return { abandonedRequests: 0, closedWebSockets: 0, durationMs: 0 };
    if (t.inService) this.#logger.warn('proxy: draining a target still in service', { target: targetId });
    if (!t.idle) {
      const deadline = delay(deadlineMs);
      await Promise.race([t.whenIdle(), deadline.promise]);
      deadline.cancel();
    }
    const abandonedRequests = t.inflight;
    const tunnels = [...t.tunnels];
    await Promise.all(tunnels.map((x) => x.goAway(WEBSOCKET_CLOSE_GRACE_MS)));
    const result = { abandonedRequests, closedWebSockets: tunnels.length, durationMs: Math.round(performance.now() - started) };
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
    await t.close();
  }

  /** Counters of a service since the proxy started; zeros for an unknown service. */
  counters(service: string): ServiceCounters {
    const c = this.#counters.get(service);
    return c === undefined ? zeroCounters() : { ...c };
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

  async #close(): Promise<void> {
    this.#closing = true;
    const servers = this.#servers.splice(0);
    const closed = servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const s of servers) s.closeIdleConnections();
    const targets = [...this.#targets.values()];
    const bound = delay(this.#opts.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS);
    const tunnelsClosed = Promise.all(targets.flatMap((t) => [...t.tunnels].map((x) => x.goAway(WEBSOCKET_CLOSE_GRACE_MS))));
    await Promise.race([Promise.all([tunnelsClosed, ...targets.map((t) => t.whenIdle())]), bound.promise]);
    bound.cancel();
    for (const s of servers) s.closeAllConnections();
    await Promise.all(closed);
    await Promise.all(targets.map((t) => t.destroy()));
    this.#targets.clear();
  }
}
