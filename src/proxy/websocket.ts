// WebSocket upgrades: pick a target, open a TCP tunnel to it, relay both ways, and close it cleanly (1001) on drain.

import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import net from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { Logger } from '../core/log.ts';
import { pick } from './balancer.ts';
import { forwardRequestHeaders } from './headers.ts';
import { clientOf } from './client.ts';
import { bodyBytes } from './gc-pacer.ts';
import { errorStatus, rawErrorResponse, type ProxyErrorCode } from './error-page.ts';
import { chooseWithCanary, pickTarget } from './split.ts';
import { FrameTracker, clientCloseFrame, serverCloseFrame } from './ws-frames.ts';
import type { SnapshotRef } from './forwarder.ts';
import type { ServiceRoute } from './snapshot.ts';
import type { TargetState, TunnelHandle } from './target.ts';
import type { ServiceCounters } from './types.ts';
import { noteUpgrade, noteUpgradeStatus } from './access-log.ts';

/** Largest response head we accept from an instance before the tunnel starts. */
const MAX_RESPONSE_HEAD = 16 * 1024;
/** How long a side may stay open after the other side closed. */
const HALF_CLOSED_TIMEOUT_MS = 5000;
const CRLFCRLF = Buffer.from('\r\n\r\n');
const STATUS_101 = /^HTTP\/1\.[01] 101[ \r]/;

function noop(): void {}

/** Accept only real WebSocket handshakes as upgrades; anything else is served as a plain request. */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade;
  return req.method === 'GET' && upgrade !== undefined && /(^|,)\s*websocket\s*(,|$)/i.test(upgrade);
}

/**
 * Open a tunnel for an upgrade routed to `route` (the canary split decides the
 * pool when a canary is active; no bucket cookie is set on a 101).
 * `start`: performance.now() at the upgrade's arrival.
 */
export function openTunnel(req: IncomingMessage, client: net.Socket, head: Buffer, route: ServiceRoute, ref: SnapshotRef, logger: Logger, start: number): void {
  const c = route.canary;
  let target: TargetState | undefined;
  let canary = false;
  if (c === null) {
    target = pick(route.policy, route.targets, route.rotation, null);
  } else {
    const choice = chooseWithCanary(route, c, req);
    target = choice.target;
    canary = choice.canary;
  }
  if (target === undefined) {
    route.shared.noRelease.batonAnswer(503, performance.now() - start);
    noteUpgradeStatus(client, 503, 'no_instance');
    client.end(rawErrorResponse('no_instance'));
    return;
  }
  const requestHead = buildRequestHead(req);
  new TunnelOpener(client, Buffer.concat([requestHead, head]), route, ref, logger, start, canary).connect(target);
}

function buildRequestHead(req: IncomingMessage): Buffer {
  const headers = forwardRequestHeaders(req.rawHeaders, clientOf(req.socket), true);
  let head = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return Buffer.from(head + '\r\n', 'latin1');
}

/** Connects to a target, moving on to another one of the service when the connection cannot be made. */
class TunnelOpener {
  readonly #client: net.Socket;
  readonly #firstBytes: Buffer;
  readonly #route: ServiceRoute;
  readonly #ref: SnapshotRef;
  readonly #logger: Logger;
  readonly #tried: TargetState[] = [];
  readonly #start: number;
  readonly #canary: boolean;
  #clientClosed = false;
  #pending: net.Socket | null = null;

  constructor(client: net.Socket, firstBytes: Buffer, route: ServiceRoute, ref: SnapshotRef, logger: Logger, start: number, canary: boolean) {
    this.#client = client;
    this.#firstBytes = firstBytes;
    this.#route = route;
    this.#ref = ref;
    this.#logger = logger;
    this.#start = start;
    this.#canary = canary;
    client.pause();
    client.once('close', this.#onClientClose);
  }

  #onClientClose = (): void => {
    this.#clientClosed = true;
    const pending = this.#pending;
    if (pending !== null) {
      this.#pending = null;
      pending.destroy();
    }
  };

  connect(target: TargetState): void {
    const up = net.connect({ host: target.host, port: target.port });
    this.#pending = up;
    up.setNoDelay(true);
    const timer = setTimeout(() => up.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), this.#route.upstream.connectTimeoutMs);
    const onError = (err: Error): void => {
      clearTimeout(timer);
      up.destroy();
      this.#pending = null;
      if (this.#clientClosed) return;
      this.#logger.debug('websocket: cannot connect to target', { target: target.id, error: err.message });
      target.metrics.connectionErrors++;
      this.#tried.push(target);
      const route = this.#ref.current.services.get(this.#route.name);
      const next = route === undefined ? undefined : pickTarget(route, this.#canary, this.#tried);
      if (next !== undefined) {
        this.#route.counters.retries++;
        target.metrics.retries++;
        this.connect(next);
      } else {
        target.metrics.batonAnswer(502, performance.now() - this.#start);
        noteUpgrade(this.#client, 502, 'upstream_unreachable', target, this.#tried.length - 1);
        this.#client.end(rawErrorResponse('upstream_unreachable'));
      }
    };
    up.once('error', onError);
    up.once('connect', () => {
      clearTimeout(timer);
      up.off('error', onError);
      this.#pending = null;
      this.#client.off('close', this.#onClientClose);
      if (this.#clientClosed) {
        up.destroy();
        target.metrics.abandoned();
        return;
      }
      noteUpgrade(this.#client, 0, null, target, this.#tried.length);
      new Tunnel(this.#client, up, target, this.#route, this.#firstBytes, this.#start);
    });
  }
}

/** One direction of a tunnel. */
interface Direction {
  readonly src: net.Socket;
  readonly dst: net.Socket;
  readonly tracker: FrameTracker;
  /** Close frame baton sends on this direction at the drain deadline. */
  readonly closeFrame: () => Buffer;
  /** 0: relaying; 1: close waiting for a frame boundary; 2: close sent, the source's frames are dropped. */
  inject: 0 | 1 | 2;
}

/** An open WebSocket tunnel: client ↔ instance, with frame boundaries tracked both ways. */
export class Tunnel implements TunnelHandle {
  readonly #client: net.Socket;
  readonly #upstream: net.Socket;
  readonly #target: TargetState;
  readonly #counters: ServiceCounters;
  readonly #start: number;
  /** The instance accepted the upgrade (counted in the release's open WebSockets). */
  #upgraded = false;
  readonly #down: Direction; // instance → client
  readonly #up: Direction; // client → instance
  /** 'head': waiting for the instance's response head; 'ws': upgraded; 'raw': refused, relay bytes as they come. */
  #mode: 'head' | 'ws' | 'raw' = 'head';
  #head: Buffer | null = null;
  #headTimer: NodeJS.Timeout | null;
  #openSockets = 2;
  #closed: Promise<void>;
  #resolveClosed!: () => void;
  #graceTimer: NodeJS.Timeout | null = null;

  constructor(client: net.Socket, upstream: net.Socket, target: TargetState, route: ServiceRoute, firstBytes: Buffer, start: number) {
    this.#client = client;
    this.#upstream = upstream;
    this.#target = target;
    this.#counters = route.counters;
    this.#start = start;
    this.#down = { src: upstream, dst: client, tracker: new FrameTracker(), closeFrame: () => serverCloseFrame(), inject: 0 };
    this.#up = { src: client, dst: upstream, tracker: new FrameTracker(), closeFrame: () => clientCloseFrame(), inject: 0 };
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    target.tunnelOpened(this);

    upstream.on('error', noop);
    this.#headTimer = setTimeout(() => this.#refuse('upstream_timeout'), route.upstream.responseTimeoutMs);

    // The request head and any bytes the client sent with it: the tracker sees
    // only what follows the HTTP head (Node hands us `head` = bytes after it).
    const headEnd = firstBytes.indexOf(CRLFCRLF) + 4;
    this.#up.tracker.push(firstBytes, headEnd);
    upstream.write(firstBytes);

    upstream.on('data', (chunk: Buffer) => this.#fromUpstream(chunk));
    client.on('data', (chunk: Buffer) => this.#relay(this.#up, chunk));
    upstream.on('drain', () => client.resume());
    client.on('drain', () => upstream.resume());
    upstream.on('end', () => client.end());
    client.on('end', () => upstream.end());
    upstream.on('close', (hadError: boolean) => this.#socketClosed(client, hadError));
    client.on('close', (hadError: boolean) => this.#socketClosed(upstream, hadError));
    client.resume();
  }

  /** Close with 1001 at frame boundaries both ways; after graceMs destroy what remains. */
  goAway(graceMs: number): Promise<void> {
    if (this.#openSockets === 0) return this.#closed;
    if (this.#mode !== 'ws' || this.#down.tracker.broken || this.#up.tracker.broken) {
      this.#destroy();
      return this.#closed;
    }
    this.#startInject(this.#down);
    this.#startInject(this.#up);
    this.#graceTimer ??= setTimeout(() => this.#destroy(), graceMs);
    return this.#closed;
  }

  #startInject(d: Direction): void {
    // This direction already carried a close: the peers are closing by themselves.
    if (d.inject !== 0 || d.tracker.closeSeen) return;
    if (d.tracker.atBoundary) {
      d.dst.write(d.closeFrame());
      d.inject = 2;
      // The source may have been paused by backpressure; its reply must still be read.
      d.src.resume();
    } else {
      d.inject = 1;
    }
  }

  #fromUpstream(chunk: Buffer): void {
    if (this.#mode === 'ws') {
      this.#relay(this.#down, chunk);
      return;
    }
    if (this.#mode === 'raw') {
      this.#write(this.#down, chunk);
      return;
    }
    const buf = this.#head === null ? chunk : Buffer.concat([this.#head, chunk]);
    const idx = buf.indexOf(CRLFCRLF);
    if (idx < 0) {
      if (buf.length > MAX_RESPONSE_HEAD) this.#refuse('upstream_failed');
      else this.#head = buf;
      return;
    }
    this.#head = null;
    if (this.#headTimer !== null) clearTimeout(this.#headTimer);
    this.#headTimer = null;
    const headEnd = idx + 4;
    const statusLine = buf.toString('latin1', 0, Math.min(headEnd, 64));
    const stats = this.#target.metrics;
    if (STATUS_101.test(statusLine)) {
      this.#mode = 'ws';
      this.#counters.websockets++;
      this.#upgraded = true;
      stats.websockets++;
      stats.websocketsTotal++;
      stats.respond(101, performance.now() - this.#start);
      noteUpgradeStatus(this.#client, 101, null);
      this.#write(this.#down, buf.subarray(0, headEnd));
      if (headEnd < buf.length) this.#relay(this.#down, buf.subarray(headEnd));
    } else {
      // The instance refused the upgrade with an ordinary response: pass it on as is.
      this.#mode = 'raw';
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
      if (status === null) stats.batonAnswer(502, performance.now() - this.#start);
      else stats.appResponse(Number(status[1]), performance.now() - this.#start);
      noteUpgradeStatus(this.#client, status === null ? 502 : Number(status[1]), status === null ? 'upstream_failed' : null);
      this.#write(this.#down, buf);
    }
  }

  #relay(d: Direction, chunk: Buffer): void {
    bodyBytes(chunk.length);
    if (d.inject === 0) {
      d.tracker.push(chunk);
      this.#write(d, chunk);
    } else if (d.inject === 1) {
      const stop = d.tracker.push(chunk, 0, true);
      if (stop > 0) this.#write(d, stop === chunk.length ? chunk : chunk.subarray(0, stop));
      if (d.tracker.atBoundary) {
        d.dst.write(d.closeFrame());
        d.inject = 2;
        this.#discard(d, chunk, stop);
      }
    } else {
      this.#discard(d, chunk, 0);
    }
  }

  /** After our close went out on `d`, the source's frames are dropped; its close frame ends its socket. */
  #discard(d: Direction, chunk: Buffer, from: number): void {
    d.tracker.push(chunk, from);
    // Injection happens only before a close passed, so a close now is the source's answer.
    if (d.tracker.closeSeen) d.src.end();
  }

  #write(d: Direction, data: Buffer): void {
    if (!d.dst.write(data)) d.src.pause();
  }

  /** The instance did not upgrade in time or sent garbage: answer the client ourselves. */
  #refuse(code: ProxyErrorCode): void {
    this.#headTimer = null;
    if (this.#mode !== 'head') return;
    this.#mode = 'raw';
    this.#target.metrics.batonAnswer(errorStatus(code), performance.now() - this.#start);
    this.#upstream.destroy();
    noteUpgradeStatus(this.#client, errorStatus(code), code);
    this.#client.end(rawErrorResponse(code));
  }

  #socketClosed(other: net.Socket, hadError: boolean): void {
    if (hadError) {
      other.destroy();
    } else {
      other.end();
      // A peer that never closes its half must not hold the tunnel open forever.
      other.setTimeout(HALF_CLOSED_TIMEOUT_MS, () => other.destroy());
    }
    if (--this.#openSockets > 0) return;
    if (this.#headTimer !== null) clearTimeout(this.#headTimer);
    if (this.#graceTimer !== null) clearTimeout(this.#graceTimer);
    if (this.#upgraded) this.#target.metrics.websockets--;
    else if (this.#mode === 'head') this.#target.metrics.abandoned();
    this.#target.tunnelClosed(this);
    this.#resolveClosed();
  }

  #destroy(): void {
    this.#client.destroy();
    this.#upstream.destroy();
  }
}

/**
 * Close tunnels with 1001 one at a time, evenly over `windowMs` (one every
 * windowMs/n, the last at the end: a lone tunnel closes at the end), in the
 * order given (oldest first),
 * so that their clients do not all reconnect in the same second. A tunnel
 * that `isOpen` says has closed by itself is skipped; stop() ends the
 * schedule and leaves the rest open. `closed` holds those it closed so far;
 * `done` resolves, with how many it closed, once the schedule ended and those closes finished (each bounded by
 * graceMs).
 */
export function closeSpread(tunnels: readonly TunnelHandle[], windowMs: number, graceMs: number, isOpen: (t: TunnelHandle) => boolean): { stop(): void; readonly closed: ReadonlySet<TunnelHandle>; done: Promise<number> } {
  let stopped = false;
  let wake: () => void = noop;
  let timer: NodeJS.Timeout | undefined;
  const step = tunnels.length === 0 ? 0 : Math.max(0, windowMs) / tunnels.length;
  const started = performance.now();
  const closed = new Set<TunnelHandle>();
  const run = async (): Promise<number> => {
    const closing: Promise<void>[] = [];
    for (let i = 0; i < tunnels.length && !stopped; i++) {
      const wait = started + (i + 1) * step - performance.now();
      if (wait > 0) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, wait);
        });
      }
      if (stopped) break;
      const t = tunnels[i]!;
      if (!isOpen(t)) continue;
      closed.add(t);
      closing.push(t.goAway(graceMs));
    }
    await Promise.all(closing);
    return closed.size;
  };
  return {
    stop: () => {
      stopped = true;
      clearTimeout(timer);
      wake();
    },
    closed,
    done: run(),
  };
}
