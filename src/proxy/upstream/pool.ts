// Keep-alive HTTP/1.1 connections to one instance, one request at a time on each.
//
// baton's own client rather than undici's Pool: the proxy needs one request
// shape (a rewritten head and a streamed body), and undici's generality cost
// 6% of the proxy's instructions and 22% of its allocation per request
// (bench/RESULTS.md, "baton's own upstream client").
// Owning the socket also bounds what a slow reader pins: responses are read
// into one shared 16 KiB buffer and copied out a read at a time, and a paused
// exchange stops reading, so the rest waits in the kernel, not in the heap
// (undici read 64 KiB per read and held it).
//
// Timers: none per request. One interval (DEADLINE_TICK_MS) checks the
// deadline of each connection (connect, response head, idle); a pooled
// connection past its idle deadline is also closed when it would be reused.

import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import net from 'node:net';
import { UpstreamError } from './errors.ts';
import { requestHead, type RequestHead, type UpstreamRequest } from './request-head.ts';
import { ResponseParser, type ResponseFields, type ResponseSink } from './response-parser.ts';

export type { UpstreamRequest } from './request-head.ts';
export type { ResponseFields, ResponseHeaders } from './response-parser.ts';

/** What the exchange may do to its attempt while it runs. */
export interface UpstreamController {
  /** End the attempt now: the connection is closed, onResponseError follows with `err`. */
  abort(err: Error): void;
  /** Stop reading the response (the client is slow); resume() reads on. */
  pause(): void;
  resume(): void;
}

/** The exchange's side of an attempt (src/proxy/forwarder.ts). Every attempt ends in onResponseEnd or onResponseError, once. */
export interface UpstreamHandler {
  /** The attempt has a connection; its head is written next. `uses`: requests the connection carried, this one included. */
  onRequestStart(controller: UpstreamController, uses: number): void;
  /** The first byte of a response arrived. */
  onResponseStarted(): void;
  /** The final response's head (1xx responses are read and dropped). */
  onResponseStart(controller: UpstreamController, status: number, fields: ResponseFields, reason: string): void;
  /**
   * A piece of the body: a view of the connection's read buffer, valid during
   * this call only (what is kept is copied: ownCopy). A small response is
   * usually written at once, as a string with its head: then no copy is made.
   */
  onResponseData(controller: UpstreamController, chunk: Buffer): void;
  onResponseEnd(controller: UpstreamController): void;
  /** Optional: a read of the response was delivered and the response goes on in a later one (what waits for more may be sent now). */
  onReadDone?(): void;
  /** `controller` is null when the attempt never had a connection (it was not sent). */
  onResponseError(controller: UpstreamController | null, err: Error): void;
}

export interface PoolOptions {
  keepAliveTimeoutMs: number;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
}

/** A server's "Keep-Alive: timeout=N" is trusted to N minus this (the close may be on its way). */
const KEEPALIVE_HINT_MARGIN_MS = 1000;
const DEADLINE_TICK_MS = 100;
const READ_BUFFER_BYTES = 16 * 1024;

// Every connection reads into this one buffer; what is kept is copied out
// within the read callback (JavaScript runs one callback at a time).
const readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);

/** Below this, a copy comes from Buffer's shared pool (cheaper); above, it has a store of its own. */
const POOLED_COPY_BYTES = 1024;

/**
 * A copy of a view of the shared read buffer. A pooled copy keeps its whole
 * pool slab (64 KiB since Node 24) alive for as long as it waits in a slow
 * client's queue, one slab per slow reader (bench/RESULTS.md section 17): the
 * reads of a large body (the ones that queue) get a store of their own; a
 * small piece, usually a whole small response written at once, stays pooled.
 */
export function ownCopy(view: Buffer): Buffer {
  if (view.length < POOLED_COPY_BYTES) return Buffer.from(view);
  const copy = Buffer.allocUnsafeSlow(view.length);
  view.copy(copy);
  return copy;
}

/** Connections with a deadline to watch (all open connections; deadline 0 = none now). */
const watched = new Set<Connection>();
let ticker: NodeJS.Timeout | null = null;

function watch(c: Connection): void {
  watched.add(c);
  if (ticker === null) {
    ticker = setInterval(checkDeadlines, DEADLINE_TICK_MS);
    ticker.unref();
  }
}

function unwatch(c: Connection): void {
  watched.delete(c);
  if (watched.size === 0 && ticker !== null) {
    clearInterval(ticker);
    ticker = null;
  }
}

/**
 * Deadlines passed are declared after this turn's I/O, not before it. Timers run
 * before the event loop polls, so after a stall (a long collection, a starved
 * CPU) a connection the kernel completed meanwhile, or a response head already
 * waiting in its socket, would be timed out unread; `setImmediate` runs after
 * the poll, which reads them first (as nginx handles its events before its
 * expired timers). A deadline still passed then is a real one.
 */
function checkDeadlines(): void {
  const now = performance.now();
  let passed: Connection[] | null = null;
  for (const c of watched) if (c.deadline !== 0 && now >= c.deadline) (passed ??= []).push(c);
  if (passed !== null) setImmediate(declarePassed, passed);
}

function declarePassed(candidates: Connection[]): void {
  const now = performance.now();
  for (const c of candidates) if (!c.closed && c.deadline !== 0 && now >= c.deadline) c.deadlinePassed();
}

function isStream(body: UpstreamRequest['body']): body is NodeJS.ReadableStream {
  return body !== null && typeof (body as NodeJS.ReadableStream).pause === 'function';
}

/** The request's body failed or ended before its declared length. */
class RequestBodyError extends Error {
  readonly code = 'BATON_REQUEST_BODY';
}

/** One request on one connection: the controller the exchange holds, and the parser's sink. */
class Attempt implements UpstreamController, ResponseSink {
  readonly #conn: Connection;
  readonly handler: UpstreamHandler;
  readonly request: UpstreamRequest;
  readonly head: RequestHead;
  /** The head was handed to the connection (onRequestStart called). */
  started = false;
  /** Ended, by a complete response or an error: nothing more reaches the handler. */
  finished = false;
  /** Every byte of the request body was written. */
  bodySent = false;
  #responseBytes = false;
  /** Undoes the body's listeners (a stream body), or stops its loop. */
  #stopBody: (() => void) | null = null;

  constructor(conn: Connection, handler: UpstreamHandler, request: UpstreamRequest, head: RequestHead) {
    this.#conn = conn;
    this.handler = handler;
    this.request = request;
    this.head = head;
  }

  // ---- controller ----

  abort(err: Error): void {
    this.fail(err);
  }

  pause(): void {
    if (!this.finished) this.#conn.pauseFor(this);
  }

  resume(): void {
    if (!this.finished) this.#conn.resumeFor(this);
  }

  // ---- parser sink ----

  onHead(status: number, reason: string, fields: ResponseFields): void {
    this.#conn.deadline = 0;
    this.handler.onResponseStart(this, status, fields, reason);
  }

  onBody(chunk: Buffer): void {
    // A view of the shared read buffer: the handler copies what it keeps.
    if (chunk.length > 0) this.handler.onResponseData(this, chunk);
  }

  // ---- driven by the connection ----

  /** Response bytes arrived; returns how many were part of this response. */
  received(data: Buffer, parser: ResponseParser): number {
    if (!this.#responseBytes) {
      this.#responseBytes = true;
      this.handler.onResponseStarted();
      if (this.finished) return data.length;
    }
    return parser.execute(data);
  }

  complete(): void {
    if (this.finished) return;
    this.finished = true;
    this.#stopBody?.();
    this.handler.onResponseEnd(this);
  }

  fail(err: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.#stopBody?.();
    this.#conn.destroyFor(this);
    this.handler.onResponseError(this.started ? this : null, err);
  }

  /** Write the body after the head: a stream with backpressure both ways, or an async iterable. */
  sendBody(conn: Connection): void {
    const socket = conn.socket;
    const body = this.request.body;
    const length = this.head.length;
    if (body === null) {
      this.bodySent = true;
      conn.awaitResponse(this);
      return;
    }
    const chunked = length === null;
    let sent = 0;
    const write = (chunk: Buffer): boolean => {
      sent += chunk.length;
      if (length !== null && sent > length) {
        this.fail(new RequestBodyError(`request body longer than its content-length ${length}`));
        return true;
      }
      if (!chunked) return socket.write(chunk);
      socket.cork();
      socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      socket.write(chunk);
      const ok = socket.write('\r\n', 'latin1');
      socket.uncork();
      return ok;
    };
    const end = (): void => {
      if (this.finished) return;
      if (length !== null && sent !== length) {
        this.fail(new RequestBodyError(`request body ended after ${sent} of its ${length} bytes`));
        return;
      }
      if (chunked) socket.write('0\r\n\r\n', 'latin1');
      this.bodySent = true;
      conn.awaitResponse(this);
    };
    if (isStream(body)) {
      const onData = (chunk: Buffer): void => {
        if (chunk.length === 0 || this.finished) return;
        if (!write(chunk) && !this.finished) {
          body.pause();
          socket.once('drain', onDrain);
        }
      };
      const onDrain = (): void => {
        if (!this.finished) body.resume();
      };
      const onEnd = (): void => {
        stop();
        end();
      };
      const onGone = (err?: Error): void => {
        stop();
        this.fail(err instanceof Error ? err : new RequestBodyError('request body ended early'));
      };
      const onClose = (): void => onGone();
      const stop = (): void => {
        body.removeListener('data', onData);
        body.removeListener('end', onEnd);
        body.removeListener('error', onGone);
        body.removeListener('close', onClose);
        socket.removeListener('drain', onDrain);
        // What the client still sends is read and dropped, so its connection can carry its next request.
        if (!this.bodySent) body.resume();
      };
      this.#stopBody = stop;
      body.on('data', onData);
      body.on('end', onEnd);
      body.on('error', onGone);
      body.on('close', onClose);
      return;
    }
    let stopped = false;
    this.#stopBody = () => {
      stopped = true;
    };
    void (async () => {
      try {
        for await (const chunk of body) {
          if (stopped || this.finished) return;
          if (!write(chunk) && !this.finished) await drained(socket);
        }
        end();
      } catch (err) {
        this.fail(err instanceof Error ? err : new RequestBodyError(String(err)));
      }
    })();
  }
}

function drained(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.removeListener('drain', done);
      socket.removeListener('close', done);
      resolve();
    };
    socket.once('drain', done);
    socket.once('close', done);
  });
}

/** One TCP connection to the instance. */
class Connection {
  readonly socket: net.Socket;
  readonly #pool: UpstreamPool;
  readonly #parser: ResponseParser;
  /** Requests carried, the current one included. */
  uses = 0;
  /** performance.now() by which the current phase must end (connect, response head, idle); 0: none. */
  deadline = 0;
  #connected = false;
  #closed = false;
  #attempt: Attempt | null = null;
  /** The attempt waiting for the connection to open. */
  #waiting: Attempt | null = null;
  /** The exchange paused reading (its client is slow). */
  #paused = false;
  /** Response bytes read but not yet handed over when the exchange paused. */
  #held: Buffer | null = null;

  constructor(pool: UpstreamPool, host: string, port: number, connectTimeoutMs: number) {
    this.#pool = pool;
    this.#parser = new ResponseParser();
    this.socket = net.connect({
      host,
      port,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: 60_000,
      onread: {
        buffer: readBuffer,
        callback: (n: number): boolean => {
          this.#onRead(n);
          return true; // pausing is the exchange's call (controller.pause)
        },
      },
    });
    this.deadline = performance.now() + connectTimeoutMs;
    this.socket.once('connect', () => this.#onConnect());
    this.socket.on('error', (err) => this.#onGone(err));
    this.socket.on('end', () => this.#onEnd());
    this.socket.on('close', () => this.#onGone(null));
    watch(this);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Run `a` now, or once connected. */
  run(a: Attempt): void {
    if (!this.#connected) {
      this.#waiting = a;
      return;
    }
    this.#start(a);
  }

  #onConnect(): void {
    this.#connected = true;
    this.deadline = 0;
    const a = this.#waiting;
    this.#waiting = null;
    if (a !== null) this.#start(a);
  }

  #start(a: Attempt): void {
    this.#attempt = a;
    this.#paused = false;
    this.#held = null;
    this.uses++;
    a.started = true;
    this.#parser.expect(a.request.method, a);
    a.handler.onRequestStart(a, this.uses);
    if (a.finished) return;
    this.socket.write(a.head.text, 'latin1');
    a.sendBody(this);
  }

  /** The request is all sent: the instance's response time runs from here (a slow upload is not the instance's delay). */
  awaitResponse(a: Attempt): void {
    if (this.#attempt !== a || this.#parser.headSeen) return;
    const timeout = this.#pool.options.responseTimeoutMs;
    this.deadline = timeout > 0 ? performance.now() + timeout : 0;
  }

  #onRead(n: number): void {
    const a = this.#attempt;
    if (a === null || a.finished) {
      // Bytes nobody asked for (or after an aborted attempt): the connection cannot be trusted.
      this.#destroy();
      return;
    }
    this.#feed(a, readBuffer.subarray(0, n), true);
  }

  /** Parse `data` for `a`; `shared`: it is a view of the shared read buffer (a rest kept must be copied). */
  #feed(a: Attempt, data: Buffer, shared: boolean): void {
    const parser = this.#parser;
    let used: number;
    try {
      used = a.received(data, parser);
    } catch (err) {
      a.fail(err as Error);
      return;
    }
    if (a.finished) return;
    if (!parser.done) {
      // The exchange paused in the middle of this read: the rest waits here, not in the client's queue.
      if (used < data.length) this.#held = shared ? ownCopy(data.subarray(used)) : data.subarray(used);
      a.handler.onReadDone?.();
      return;
    }
    // Complete. The connection carries another request only if nothing is left over or unsent.
    const reusable = parser.reusable && used === data.length && this.#held === null && a.bodySent && a.request.method !== 'HEAD';
    this.#attempt = null;
    this.#release(reusable);
    a.complete();
  }

  pauseFor(a: Attempt): void {
    if (this.#attempt !== a) return;
    this.#paused = true;
    this.socket.pause();
    this.#parser.yieldNow();
  }

  resumeFor(a: Attempt): void {
    if (this.#attempt !== a || !this.#paused) return;
    this.#paused = false;
    const held = this.#held;
    if (held !== null) {
      this.#held = null;
      this.#feed(a, held, false);
      if (this.#paused || this.#attempt !== a) return;
    }
    this.socket.resume();
  }

  #release(reusable: boolean): void {
    const pool = this.#pool;
    if (!reusable || pool.closing) {
      this.#destroy();
      return;
    }
    const hint = this.#parser.keepAliveHintMs;
    const idleMs = hint > 0 ? Math.min(pool.options.keepAliveTimeoutMs, hint - KEEPALIVE_HINT_MARGIN_MS) : pool.options.keepAliveTimeoutMs;
    if (idleMs <= 0) {
      this.#destroy();
      return;
    }
    this.deadline = performance.now() + idleMs;
    if (this.#paused) {
      this.#paused = false;
      this.socket.resume();
    }
    pool.idled(this);
  }

  /** The instance ended its side: a body read to the close is complete; anything else was cut. */
  #onEnd(): void {
    const a = this.#attempt;
    if (a === null || a.finished) {
      this.#destroy();
      return;
    }
    try {
      this.#parser.finish();
    } catch {
      this.#onGone(null);
      return;
    }
    this.#attempt = null;
    this.#destroy();
    a.complete();
  }

  #onGone(err: Error | null): void {
    const a = this.#attempt ?? this.#waiting;
    this.#attempt = null;
    this.#waiting = null;
    this.#destroy();
    if (a !== null && !a.finished) {
      a.fail(err ?? new UpstreamError('BATON_UPSTREAM_CLOSED', a.started ? 'the instance closed the connection before a complete response' : 'the connection closed before it opened'));
    }
  }

  deadlinePassed(): void {
    this.deadline = 0;
    const a = this.#attempt ?? this.#waiting;
    if (a === null) {
      this.#destroy(); // idle long enough
      return;
    }
    if (!this.#connected) a.fail(new UpstreamError('BATON_UPSTREAM_CONNECT_TIMEOUT', `no connection within ${this.#pool.options.connectTimeoutMs} ms`));
    else a.fail(new UpstreamError('BATON_UPSTREAM_HEADERS_TIMEOUT', `no response head within ${this.#pool.options.responseTimeoutMs} ms`));
  }

  /** Close for an attempt that failed (only if it is this connection's). */
  destroyFor(a: Attempt): void {
    if (this.#attempt === a || this.#waiting === a) {
      this.#attempt = null;
      this.#waiting = null;
      this.#parser.halt();
      this.#destroy();
    }
  }

  #destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.deadline = 0;
    unwatch(this);
    this.socket.destroy();
    this.#pool.closed(this);
  }

  /** The pool is being destroyed: fail what runs here. */
  destroy(err: Error): void {
    const a = this.#attempt ?? this.#waiting;
    if (a !== null) a.fail(err);
    this.#destroy();
  }
}

/** The connections to one instance (host:port). */
export class UpstreamPool {
  readonly options: PoolOptions;
  readonly #host: string;
  readonly #port: number;
  readonly #defaultHost: string;
  /** Open connections waiting for a request, the most recently used last. */
  readonly #idle: Connection[] = [];
  readonly #all = new Set<Connection>();
  closing = false;
  #onEmpty: (() => void) | null = null;

  constructor(host: string, port: number, options: PoolOptions) {
    this.#host = host;
    this.#port = port;
    this.options = options;
    this.#defaultHost = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  }

  /** Send `request`; `handler` hears everything from here on (never synchronously an error: those come in a microtask). */
  dispatch(request: UpstreamRequest, handler: UpstreamHandler): void {
    let head: RequestHead;
    try {
      head = requestHead(request, this.#defaultHost);
    } catch (err) {
      queueMicrotask(() => handler.onResponseError(null, err as Error));
      return;
    }
    if (this.closing) {
      queueMicrotask(() => handler.onResponseError(null, new UpstreamError('BATON_UPSTREAM_POOL_CLOSED', 'the pool of this instance is closed')));
      return;
    }
    const conn = this.#take();
    conn.run(new Attempt(conn, handler, request, head));
  }

  /** The most recently used idle connection still within its idle time, or a new one. */
  #take(): Connection {
    const now = performance.now();
    for (;;) {
      const c = this.#idle.pop();
      if (c === undefined) break;
      if (c.closed) continue;
      if (c.deadline !== 0 && now >= c.deadline) {
        c.deadlinePassed();
        continue;
      }
      c.deadline = 0;
      return c;
    }
    const c = new Connection(this, this.#host, this.#port, this.options.connectTimeoutMs);
    this.#all.add(c);
    return c;
  }

  /** A connection finished a request and may carry another (never called once the pool is closing). */
  idled(c: Connection): void {
    this.#idle.push(c);
  }

  /** A connection closed (for whatever reason). */
  closed(c: Connection): void {
    this.#all.delete(c);
    const i = this.#idle.lastIndexOf(c);
    if (i >= 0) this.#idle.splice(i, 1);
    if (this.closing && this.#all.size === 0 && this.#onEmpty !== null) {
      const wake = this.#onEmpty;
      this.#onEmpty = null;
      wake();
    }
  }

  /** No new requests; resolves once the running ones finished and every connection closed. */
  close(): Promise<void> {
    this.closing = true;
    for (const c of [...this.#idle]) c.destroy(new UpstreamError('BATON_UPSTREAM_POOL_CLOSED', 'pool closed'));
    if (this.#all.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const prev = this.#onEmpty;
      this.#onEmpty = () => {
        prev?.();
        resolve();
      };
    });
  }

  /** Close every connection now; running requests fail. */
  destroy(): Promise<void> {
    const done = this.close();
    for (const c of [...this.#all]) c.destroy(new UpstreamError('BATON_UPSTREAM_POOL_CLOSED', 'pool destroyed'));
    return done;
  }
}
