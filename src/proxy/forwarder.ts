// One proxied HTTP exchange: client request → chosen target (its upstream pool) → client response, with the retry rules.

import type { IncomingMessage } from 'node:http';
import { nodeHttp } from '../core/node-http.ts';
import { pick } from './balancer.ts';
import { decideRetry } from './retry.ts';
import { forwardRequestHeaders, forwardResponseHeaders } from './headers.ts';
import { clientOf } from './client.ts';
import { bodyBytes, onRequestBodyData } from './gc-pacer.ts';
import { errorStatus, sendErrorPage, type ProxyErrorCode } from './error-page.ts';
import { limitedBody, lingerOnClose } from './limits.ts';
import { chooseWithCanary, pickTarget } from './split.ts';
import type { ResponseHeaders, UpstreamController, UpstreamHandler, UpstreamRequest } from './upstream/pool.ts';
import type { RoutingSnapshot, ServiceRoute } from './snapshot.ts';
import type { TargetState } from './target.ts';

/** Holder of the current snapshot; retries read it again so they go where traffic goes now. */
export interface SnapshotRef {
  current: RoutingSnapshot;
}

/** The response object of baton's servers: it points at its exchange, so shared listeners need no closures. */
export class BatonResponse extends nodeHttp.ServerResponse<IncomingMessage> {
  exchange: Exchange | null = null;
  /** For the access log: the target that answered (null: baton answered), its retries, the body bytes relayed. */
  target: TargetState | null = null;
  retries = 0;
  relayedBytes = 0;
}

// A response whose head goes out after its listener stopped accepting (the
// proxy closes, or a successor daemon took the socket over: `baton upgrade`)
// says Connection: close, even if its request came before: the client's next
// request then opens a connection to whoever accepts now.
Object.defineProperty(BatonResponse.prototype, 'writeHead', {
  value: function writeHead(this: BatonResponse, ...args: unknown[]): unknown {
    if ((this.socket as { server?: { listening?: boolean } } | null)?.server?.listening === false) this.shouldKeepAlive = false;
    return Reflect.apply(Reflect.get(nodeHttp.ServerResponse.prototype, 'writeHead') as (...a: unknown[]) => unknown, this, args);
  },
  writable: true,
  configurable: true,
});

/** The error a client-gone abort carries (never shown to anyone). */
class ClientGoneError extends Error {
  readonly code = 'BATON_CLIENT_GONE';
}

/** A request that cannot be sent as it is: not the instance's fault. */
const REQUEST_INVALID = 'BATON_UPSTREAM_INVALID_REQUEST';

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'BATON_UPSTREAM_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ECONNRESET']);

function errorCodeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Which page answers an attempt that failed before any response byte. */
function failureCode(sent: boolean, code: string | undefined): ProxyErrorCode {
  if (code === 'BATON_UPSTREAM_HEADERS_TIMEOUT') return 'upstream_timeout';
  if (code === REQUEST_INVALID) return 'bad_request';
  if (!sent && code !== undefined && CONNECT_ERRORS.has(code)) return 'upstream_unreachable';
  return 'upstream_failed';
}

// Shared listeners: `this` is the response; no per-request closures.
function onClientClose(this: BatonResponse): void {
  this.exchange?.clientClosed();
}
function onClientDrain(this: BatonResponse): void {
  this.exchange?.resumeUpstream();
}

/**
 * Forward `req` to a target of `route` (the canary split decides the pool when
 * a canary is active). `start`: performance.now() at the request's arrival.
 * Returns synchronously; the exchange runs on the pool's callbacks.
 */
export function forward(req: IncomingMessage, res: BatonResponse, route: ServiceRoute, ref: SnapshotRef, start: number): void {
  const c = route.canary;
  let target: TargetState | undefined;
  let canary = false;
  let setCookie: string | null = null;
  if (c === null) {
    target = pick(route.policy, route.targets, route.rotation, null);
  } else {
    const choice = chooseWithCanary(route, c, req);
    target = choice.target;
    canary = choice.canary;
    setCookie = choice.setCookie;
  }
  if (target === undefined) {
    route.counters.requests++;
    route.counters.failed++;
    route.shared.noRelease.batonAnswer(503, performance.now() - start);
    sendErrorPage(res, 'no_instance', req.headers.accept, false);
    return;
  }
  new Exchange(req, res, route, ref, start, canary, setCookie).start(target);
}

function hasBody(req: IncomingMessage): boolean {
  const te = req.headers['transfer-encoding'];
  if (te !== undefined) return true;
  const cl = req.headers['content-length'];
  return cl !== undefined && cl !== '0';
}

export class Exchange implements UpstreamHandler {
  readonly #req: IncomingMessage;
  readonly #res: BatonResponse;
  readonly #route: ServiceRoute;
  readonly #ref: SnapshotRef;
  readonly #opts: UpstreamRequest;
  readonly #hasBody: boolean;
  /** performance.now() at the request's arrival. */
  readonly #start: number;
  /** The pool the split chose (retries try it first). */
  readonly #canary: boolean;
  /** baton's bucket cookie to add to the response, when the bucket was computed for this request. */
  readonly #setCookie: string | null;
  /** The response head (or baton's page) was counted in the release metrics. */
  #recorded = false;
  #target: TargetState | null = null;
  #tried: TargetState[] | null = null;
  #controller: UpstreamController | null = null;
  /** The pool handed the current attempt to a connection. */
  #sent = false;
  /** A response byte of the current attempt arrived. */
  #responseStarted = false;
  /** The response head went to the client: from here a failure can only cut the connection. */
  #responding = false;
  /** The one resend after a lost connection was used. */
  #resendUsed = false;
  #drainHooked = false;
  #clientGone = false;
  /** The body has no declared length and the service limits it: it streams through limitedBody. */
  readonly #bodyLimited: boolean;
  /** That body passed the service's limit (the upstream request is being aborted). */
  #bodyOver = false;
  #done = false;
  /** Requests carried by the attempt's connection, this one included. */
  socketUses = 0;

  constructor(req: IncomingMessage, res: BatonResponse, route: ServiceRoute, ref: SnapshotRef, start: number, canary: boolean, setCookie: string | null) {
    this.#req = req;
    this.#res = res;
    this.#route = route;
    this.#ref = ref;
    this.#start = start;
    this.#canary = canary;
    this.#setCookie = setCookie;
    const body = hasBody(req);
    this.#hasBody = body;
    const max = route.maxBodyBytes;
    // A declared length over the limit never gets here (dispatch's 413); a declared one within it is exact (llhttp).
    this.#bodyLimited = body && max !== null && req.headers['content-length'] === undefined;
    const socket = req.socket;
    this.#opts = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers: forwardRequestHeaders(req.rawHeaders, clientOf(socket)),
      body: body ? (this.#bodyLimited ? limitedBody(req, max!, bodyBytes, () => (this.#bodyOver = true)) : req) : null,
    };
    res.exchange = this;
    res.on('close', onClientClose);
  }

  start(target: TargetState): void {
    this.#attempt(target);
  }

  #attempt(target: TargetState): void {
    this.#target = target;
    this.#res.target = target;
    this.#sent = false;
    this.#responseStarted = false;
    this.#controller = null;
    this.socketUses = 0;
    target.inflight++;
    target.metrics.inflight++;
    target.requests++;
    target.pool.dispatch(this.#opts, this);
  }

  // ---- the pool's handler ----

  onRequestStart(controller: UpstreamController, uses: number): void {
    this.#controller = controller;
    this.#sent = true;
    this.socketUses = uses;
    if (this.#clientGone) {
      controller.abort(new ClientGoneError('client went away'));
      return;
    }
    // Count the body's bytes. Only now: the pool attaches its own 'data' listener in
    // this same synchronous step, so the stream starts flowing (next tick) with both
    // listeners on, and no chunk can pass before the pool reads it. A body is sent
    // once at most (never resent once on a connection), so this runs once per request.
    if (this.#hasBody && !this.#bodyLimited) this.#req.on('data', onRequestBodyData);
  }

  onResponseStarted(): void {
    this.#responseStarted = true;
  }

  onResponseStart(controller: UpstreamController, statusCode: number, headers: ResponseHeaders, statusMessage: string): void {
    this.#responseStarted = true;
    const out = forwardResponseHeaders(headers);
    const cookie = this.#setCookie;
    if (cookie !== null) {
      const prev = out['set-cookie'];
      out['set-cookie'] = prev === undefined ? cookie : Array.isArray(prev) ? [...prev, cookie] : [String(prev), cookie];
      this.#route.shared.routing.cookiesSet++;
    }
    try {
      this.#res.writeHead(statusCode, statusMessage || undefined, out);
    } catch (err) {
      // A head Node refuses to write (invalid header value): treat as a failed instance.
      controller.abort(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.#responding = true;
    this.#recorded = true;
    this.#target!.metrics.appResponse(statusCode, performance.now() - this.#start);
    if (statusCode >= 500) this.#route.counters.appErrors++;
  }

  onResponseData(controller: UpstreamController, chunk: Buffer): void {
    bodyBytes(chunk.length);
    this.#res.relayedBytes += chunk.length;
    if (!this.#res.write(chunk)) {
      controller.pause();
      if (!this.#drainHooked) {
        this.#drainHooked = true;
        this.#res.on('drain', onClientDrain);
      }
    }
  }

  onResponseEnd(): void {
    this.#res.end();
    this.#target!.requestDone();
    this.#finish(false);
  }

  onResponseError(_controller: UpstreamController | null, err: Error): void {
    const target = this.#target!;
    target.requestDone();
    if (this.#done) return;
    if (this.#bodyOver) {
      this.#refuseBody();
      return;
    }
    const res = this.#res;
    if (this.#clientGone || res.destroyed) {
      this.#finish(false);
      return;
    }
    if (this.#responding) {
      // Part of the response went out: never let the client take a cut body for a complete one.
      res.destroy();
      target.metrics.cut();
      this.#finish(true);
      return;
    }
    const code = errorCodeOf(err);
    if (code !== REQUEST_INVALID) target.metrics.connectionErrors++;
    const decision = decideRetry({
      method: this.#opts.method,
      hasBody: this.#hasBody,
      sent: this.#sent,
      reusedConnection: this.socketUses > 1,
      responseStarted: this.#responseStarted,
      errorCode: code,
      resendUsed: this.#resendUsed,
    });
    if (decision !== 'none') {
      const route = this.#ref.current.services.get(this.#route.name);
      let next: TargetState | undefined;
      if (route !== undefined) {
        // The chosen pool first, then the other one (pickTarget).
        const tried = (this.#tried ??= []);
        tried.push(target);
        next = pickTarget(route, this.#canary, tried);
        if (decision !== 'other') this.#resendUsed = true;
        // A reused connection most likely met an idle close by a live instance:
        // the same instance is a fine second choice. A fresh one that died means
        // the instance is failing: another instance or nothing.
        if (next === undefined && decision === 'again') next = pickTarget(route, this.#canary, null);
      }
      if (next !== undefined) {
        this.#route.counters.retries++;
        target.metrics.retries++;
        this.#res.retries++;
        this.#attempt(next);
        return;
      }
    }
    this.#fail(failureCode(this.#sent, code));
  }

  // ---- client side ----

  /** The client connection closed (or the response finished: then nothing to do). */
  clientClosed(): void {
    if (this.#done) return;
    this.#clientGone = true;
    // Not yet started: onRequestStart will abort it.
    this.#controller?.abort(new ClientGoneError('client went away'));
  }

  resumeUpstream(): void {
    this.#controller?.resume();
  }

  /**
   * A body without declared length passed the service's limit: the upstream
   * request is aborted (the instance got at most the limit, never the body's
   * end). The client gets 413 and its connection closes; if the instance had
   * answered already, its response is cut. The client's doing, not baton's failure.
   */
  #refuseBody(): void {
    const req = this.#req;
    const res = this.#res;
    if (!this.#clientGone && !res.destroyed) {
      if (this.#responding) {
        res.destroy();
      } else {
        this.#recorded = true;
        this.#target!.metrics.batonAnswer(413, performance.now() - this.#start);
        lingerOnClose(req.httpVersionMajor === 2 ? null : req.socket);
        try {
          sendErrorPage(res, 'body_too_large', req.headers.accept, true);
        } catch {
          res.destroy();
        }
      }
    }
    this.#finish(false);
  }

  #fail(code: ProxyErrorCode): void {
    const req = this.#req;
    // A body the pool began to read may not have been read to its end: close after the page.
    const closeConnection = this.#hasBody && this.#sent && !req.complete;
    this.#recorded = true;
    const status = errorStatus(code);
    this.#target!.metrics.batonAnswer(status, performance.now() - this.#start);
    try {
      sendErrorPage(this.#res, code, req.headers.accept, closeConnection);
    } catch {
      // Never throw into the pool's callbacks.
      this.#res.destroy();
    }
    // A 400 (a request that could not be sent) is the client's failure, not baton's.
    this.#finish(status >= 500);
  }

  #finish(failed: boolean): void {
    this.#done = true;
    this.#res.exchange = null;
    const counters = this.#route.counters;
    counters.requests++;
    if (failed) counters.failed++;
    if (!this.#recorded) this.#target!.metrics.abandoned();
  }
}
