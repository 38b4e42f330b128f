// One proxied HTTP exchange: client request → chosen target (its upstream pool) → client response, with the retry rules.

import { performance } from 'node:perf_hooks';
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
import { ownCopy, type ResponseFields, type UpstreamController, type UpstreamHandler, type UpstreamRequest } from './upstream/pool.ts';
import { UPSTREAM_INVALID_REQUEST } from './upstream/errors.ts';
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

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'BATON_UPSTREAM_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ECONNRESET']);

function errorCodeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Which page answers an attempt that failed before any response byte. */
function failureCode(sent: boolean, code: string | undefined): ProxyErrorCode {
  if (code === 'BATON_UPSTREAM_HEADERS_TIMEOUT') return 'upstream_timeout';
  if (code === UPSTREAM_INVALID_REQUEST) return 'bad_request';
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
 * The client's side of an exchange: where the response goes. node:http's and
 * node:http2's responses (NodeReply), or a connection of baton's own HTTP/1.1
 * path (src/proxy/h1/), which writes heads and bodies on the socket itself.
 */
export interface ClientReply {
  /** The client is gone or its connection was cut: nothing more can be written. */
  readonly gone: boolean;
  /** The exchange answering on this reply now (null once it is done). */
  attach(exchange: Exchange | null): void;
  /** The instance's response head; throws when the head cannot be written as it is (then the attempt is aborted). */
  head(status: number, reason: string, fields: ResponseFields, setCookie: string | null): void;
  /**
   * A piece of the body, valid during this call only (a view of the upstream
   * connection's read buffer: what is queued is copied, ownCopy); false: the
   * client's queue is full, exchange.resumeUpstream() comes once it drained.
   */
  body(chunk: Buffer): boolean;
  end(): void;
  /** Cut the connection: a response that cannot be completed must not look complete. */
  cut(): void;
  /** baton's own page; `closeConnection` when the request's body may be left half-read. */
  page(code: ProxyErrorCode, closeConnection: boolean): void;
  /** Optional: a read of the response was delivered, more comes later (send what waits for the body: a lean head). */
  readDone?(): void;
  /** For the access log: the target of the current attempt, a retry, relayed body bytes. */
  noteTarget(target: TargetState): void;
  noteRetry(): void;
}

/** A ClientReply on node:http's (or node:http2's compatibility) response. */
class NodeReply implements ClientReply {
  readonly #res: BatonResponse;
  #drainHooked = false;

  constructor(res: BatonResponse) {
    this.#res = res;
  }

  get gone(): boolean {
    return this.#res.destroyed;
  }

  attach(exchange: Exchange | null): void {
    this.#res.exchange = exchange;
    if (exchange !== null) this.#res.on('close', onClientClose);
  }

  head(status: number, reason: string, fields: ResponseFields, setCookie: string | null): void {
    const out = forwardResponseHeaders(fields.toObject());
    if (setCookie !== null) {
      const prev = out['set-cookie'];
      out['set-cookie'] = prev === undefined ? setCookie : Array.isArray(prev) ? [...prev, setCookie] : [String(prev), setCookie];
    }
    this.#res.writeHead(status, reason || undefined, out);
  }

  body(chunk: Buffer): boolean {
    const res = this.#res;
    res.relayedBytes += chunk.length;
    if (res.write(ownCopy(chunk))) return true;
    if (!this.#drainHooked) {
      this.#drainHooked = true;
      res.on('drain', onClientDrain);
    }
    return false;
  }

  end(): void {
    this.#res.end();
  }

  cut(): void {
    this.#res.destroy();
  }

  page(code: ProxyErrorCode, closeConnection: boolean): void {
    try {
      sendErrorPage(this.#res, code, this.#res.req.headers.accept, closeConnection);
    } catch {
      // Never throw into the pool's callbacks.
      this.#res.destroy();
    }
  }

  noteTarget(target: TargetState): void {
    this.#res.target = target;
  }

  noteRetry(): void {
    this.#res.retries++;
  }
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
    countNoInstance(route, start);
    sendErrorPage(res, 'no_instance', req.headers.accept, false);
    return;
  }
  const head = { method: req.method ?? 'GET', path: req.url ?? '/', headers: forwardRequestHeaders(req.rawHeaders, clientOf(req.socket)) };
  new Exchange(new NodeReply(res), req, head, route, ref, start, canary, setCookie).start(target);
}

/** A request answered 503 no_instance (no target in either pool): a failure of the service, of no release. */
export function countNoInstance(route: ServiceRoute, start: number): void {
  route.counters.requests++;
  route.counters.failed++;
  route.shared.noRelease.batonAnswer(503, performance.now() - start);
}

function hasBody(req: IncomingMessage | null): boolean {
  if (req === null) return false;
  const te = req.headers['transfer-encoding'];
  if (te !== undefined) return true;
  const cl = req.headers['content-length'];
  return cl !== undefined && cl !== '0';
}

/** The request's method, target and rewritten header list (src/proxy/headers.ts). */
export type RequestHeadOut = Pick<UpstreamRequest, 'method' | 'path' | 'headers' | 'checked' | 'fields'> & {
  /** baton's own HTTP/1.1 path: the body of the request's Content-Length as it arrives (node:http's requests carry theirs). */
  body?: NodeJS.ReadableStream | undefined;
};

export class Exchange implements UpstreamHandler {
  readonly #reply: ClientReply;
  /** node:http's request when it may carry a body (null: baton's own HTTP/1.1 path, bodiless requests only). */
  readonly #req: IncomingMessage | null;
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
  #clientGone = false;
  /** The body has no declared length and the service limits it: it streams through limitedBody. */
  readonly #bodyLimited: boolean;
  /** That body passed the service's limit (the upstream request is being aborted). */
  #bodyOver = false;
  #done = false;
  /** Requests carried by the attempt's connection, this one included. */
  #socketUses = 0;

  constructor(reply: ClientReply, req: IncomingMessage | null, head: RequestHeadOut, route: ServiceRoute, ref: SnapshotRef, start: number, canary: boolean, setCookie: string | null) {
    this.#reply = reply;
    this.#req = req;
    this.#route = route;
    this.#ref = ref;
    this.#start = start;
    this.#canary = canary;
    this.#setCookie = setCookie;
    const lean = head.body ?? null;
    const body = lean !== null || hasBody(req);
    this.#hasBody = body;
    const max = route.maxBodyBytes;
    // A declared length over the limit never gets here (dispatch's 413, or the lean path hands it to node:http); a declared one within it is exact.
    this.#bodyLimited = lean === null && body && max !== null && req!.headers['content-length'] === undefined;
    this.#opts = {
      method: head.method,
      path: head.path,
      headers: head.headers,
      fields: head.fields,
      checked: head.checked === true,
      body: lean ?? (body ? (this.#bodyLimited ? limitedBody(req!, max!, bodyBytes, () => (this.#bodyOver = true)) : req) : null),
    };
    reply.attach(this);
  }

  start(target: TargetState): void {
    this.#attempt(target);
  }

  #attempt(target: TargetState): void {
    this.#target = target;
    this.#reply.noteTarget(target);
    this.#sent = false;
    this.#responseStarted = false;
    this.#controller = null;
    this.#socketUses = 0;
    target.inflight++;
    target.metrics.inflight++;
    target.requests++;
    target.pool.dispatch(this.#opts, this);
  }

  // ---- the pool's handler ----

  onRequestStart(controller: UpstreamController, uses: number): void {
    this.#controller = controller;
    this.#sent = true;
    this.#socketUses = uses;
    if (this.#clientGone) {
      controller.abort(new ClientGoneError('client went away'));
      return;
    }
    // Count the body's bytes. Only now: the pool attaches its own 'data' listener in
    // this same synchronous step, so the stream starts flowing (next tick) with both
    // listeners on, and no chunk can pass before the pool reads it. A body is sent
    // once at most (never resent once on a connection), so this runs once per request.
    if (this.#hasBody && !this.#bodyLimited) (this.#opts.body as NodeJS.ReadableStream).on('data', onRequestBodyData);
  }

  onResponseStarted(): void {
    this.#responseStarted = true;
  }

  onResponseStart(controller: UpstreamController, statusCode: number, fields: ResponseFields, statusMessage: string): void {
    this.#responseStarted = true;
    const cookie = this.#setCookie;
    try {
      this.#reply.head(statusCode, statusMessage, fields, cookie);
    } catch (err) {
      // A head Node refuses to write (invalid header value): treat as a failed instance.
      controller.abort(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (cookie !== null) this.#route.shared.routing.cookiesSet++;
    this.#responding = true;
    this.#recorded = true;
    this.#target!.metrics.appResponse(statusCode, performance.now() - this.#start);
    if (statusCode >= 500) this.#route.counters.appErrors++;
  }

  onResponseData(controller: UpstreamController, chunk: Buffer): void {
    bodyBytes(chunk.length);
    if (!this.#reply.body(chunk)) controller.pause();
  }

  onReadDone(): void {
    this.#reply.readDone?.();
  }

  onResponseEnd(): void {
    this.#target!.requestDone();
    this.#finish(false);
    this.#reply.end();
  }

  onResponseError(_controller: UpstreamController | null, err: Error): void {
    const target = this.#target!;
    target.requestDone();
    if (this.#done) return;
    if (this.#bodyOver) {
      this.#refuseBody();
      return;
    }
    const reply = this.#reply;
    if (this.#clientGone || reply.gone) {
      this.#finish(false);
      return;
    }
    if (this.#responding) {
      // Part of the response went out: never let the client take a cut body for a complete one.
      target.metrics.cut();
      this.#finish(true);
      reply.cut();
      return;
    }
    const code = errorCodeOf(err);
    if (code !== UPSTREAM_INVALID_REQUEST) target.metrics.connectionErrors++;
    const decision = decideRetry({
      method: this.#opts.method,
      hasBody: this.#hasBody,
      sent: this.#sent,
      reusedConnection: this.#socketUses > 1,
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
        reply.noteRetry();
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
    const req = this.#req!;
    const reply = this.#reply;
    const answer = !this.#clientGone && !reply.gone;
    this.#finish(false);
    if (!answer) return;
    if (this.#responding) {
      reply.cut();
      return;
    }
    this.#recorded = true;
    this.#target!.metrics.batonAnswer(413, performance.now() - this.#start);
    lingerOnClose(req.httpVersionMajor === 2 ? null : req.socket);
    reply.page('body_too_large', true);
  }

  #fail(code: ProxyErrorCode): void {
    const req = this.#req;
    // A body the pool began to read may not have been read to its end: close after the page
    // (the lean path knows for itself whether its body arrived whole).
    const closeConnection = this.#hasBody && this.#sent && req !== null && !req.complete;
    this.#recorded = true;
    const status = errorStatus(code);
    this.#target!.metrics.batonAnswer(status, performance.now() - this.#start);
    // A 400 (a request that could not be sent) is the client's failure, not baton's.
    this.#finish(status >= 500);
    this.#reply.page(code, closeConnection);
  }

  /** Counted and detached before the client's side is ended: a lean connection may start its next request from end(). */
  #finish(failed: boolean): void {
    this.#done = true;
    this.#reply.attach(null);
    const counters = this.#route.counters;
    counters.requests++;
    if (failed) counters.failed++;
    if (!this.#recorded) this.#target!.metrics.abandoned();
  }
}
