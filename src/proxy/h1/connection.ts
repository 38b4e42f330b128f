// baton's own HTTP/1.1 server path for plain requests on the public listeners
// (plain HTTP, and HTTPS connections that chose HTTP/1.1).
//
// Why: node:http's server costs more per request than all of baton's own work
// (IncomingMessage and ServerResponse, their streams, a headers object built
// for every request). A prototype on this machine served 17.5k req/s through
// node:http and 25.5k with its own reads and writes on both sides (nginx: 31k).
//
// What: a connection starts here. Each request head is read by
// request-head.ts. A plain one (HTTP/1.1, no body or a body of one
// Content-Length within the service's limit) to a service that is not gated
// (maintenance, pause), within its in-flight cap if it has one, is forwarded
// by the same Exchange as node:http's requests (a canary's split made as
// node:http's path makes it), its body streamed to the instance as it
// arrives, its response head and body written on the socket here. The first
// request that is anything else, or a head that has not fully arrived, hands
// the connection to node:http for the rest of its life, with every byte not
// yet answered, between two responses, never during one. So anything unusual
// (chunked bodies, bodies over the limit, upgrades, 100-continue, malformed or
// slow heads, baton's own endpoints and pages for the limits) is handled
// exactly as before.
//
// Timers: none per request. One interval checks each connection's deadline:
// the headers timeout of a new connection (408, as node:http), the idle
// timeout between requests (closed, as node:http).

import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { nodeHttp } from '../../core/node-http.ts';
import { pick } from '../balancer.ts';
import { clientOf, setClient } from '../client.ts';
import { errorResponse, type ProxyErrorCode } from '../error-page.ts';
import { countNoInstance, Exchange, type ClientReply, type SnapshotRef } from '../forwarder.ts';
import { connectionNominated, isHopByHop } from '../headers.ts';
import { answerClientError, lingerOnClose, type RequestLimits } from '../limits.ts';
import { ownCopy, type ResponseFields } from '../upstream/pool.ts';
import type { TargetState } from '../target.ts';
import type { AccessLog } from '../access-log.ts';
import { Forwarding, HAND_OFF, INCOMPLETE, instanceRequest, parseLeanHead, type LeanHead } from './request-head.ts';
import { nodeHeaders } from './node-headers.ts';
import { isSharedView, sharedReads, type SharedReads } from './shared-reads.ts';
import { chooseWithCanary } from '../split.ts';

/** What a listener's lean connections read from the proxy. */
export interface LeanListener {
  readonly ref: SnapshotRef;
  /** Read per request: a reload replaces them. */
  limits(): RequestLimits;
  /** The proxy closes, or the listener no longer accepts (a successor took it over): answers say Connection: close. */
  closing(): boolean;
  /** Requests go to node:http now (the plain front of TLS listeners answers first). */
  bypass(): boolean;
  /** proxy.access_log now, or null. */
  accessLog(): AccessLog | null;
  /** Header lines every response of this listener carries, each ending in CRLF (HSTS on a TLS listener), or ''. */
  readonly extraLines: string;
  /** The client timeouts now (a reload changes them). */
  timeouts(): { clientIdleTimeoutMs: number; headersTimeoutMs: number };
  /** node:http's own handling of a connection (its 'connection' listeners). */
  handOff(socket: Socket): void;
}

/** Bytes read ahead while a response is under way (pipelined requests) before reading stops until it ends. */
const READ_AHEAD_BYTES = 64 * 1024;
/** node:http keeps an idle connection this much past the timeout it announces, so a client's reuse at the edge does not race the close. */
const KEEP_ALIVE_GRACE_MS = 1000;
const DEADLINE_TICK_MS = 100;
/** A body chunk up to this size is sent in one write with the response head (as one latin1 string). */
const HEAD_WITH_BODY_BYTES = 8 * 1024;

let dateSecond = -1;
let dateText = '';

/** The Date value, computed once a second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

function uncork(socket: Socket): void {
  socket.uncork();
}

function serveNext(c: LeanConnection): void {
  c.serve();
}

/** The lean connections of one listener: accepted, closed idle, cut at the end. */
export class LeanConnections {
  readonly #listener: LeanListener;
  readonly #open = new Set<LeanConnection>();
  #ticker: NodeJS.Timeout | null = null;
  #keepAliveMs = -1;
  #keepAliveLines = '';

  constructor(listener: LeanListener) {
    this.#listener = listener;
  }

  /** Announced in every kept-alive response (node:http's form). */
  keepAliveLines(): string {
    const ms = this.#listener.timeouts().clientIdleTimeoutMs;
    if (ms !== this.#keepAliveMs) {
      this.#keepAliveMs = ms;
      this.#keepAliveLines = `connection: keep-alive\r\nkeep-alive: timeout=${Math.floor(ms / 1000)}\r\n`;
    }
    return this.#keepAliveLines;
  }

  /**
   * Serve `socket` (its client already identified); `first`: bytes already
   * read from it (after a PROXY header). `shareReads`: a plain TCP socket,
   * read into the shared buffer from now on (shared-reads.ts).
   */
  accept(socket: Socket, first: Buffer | null, shareReads = false): void {
    const c = new LeanConnection(socket, this.#listener, this, shareReads);
    this.#open.add(c);
    if (this.#ticker === null) {
      this.#ticker = setInterval(() => this.#checkDeadlines(), DEADLINE_TICK_MS);
      this.#ticker.unref();
    }
    if (first !== null && first.length > 0) c.received(first);
  }

  forget(c: LeanConnection): void {
    this.#open.delete(c);
    if (this.#open.size === 0 && this.#ticker !== null) {
      clearInterval(this.#ticker);
      this.#ticker = null;
    }
  }

  /** Close the connections between requests (the proxy closes); the others close after their response. */
  closeIdle(): void {
    for (const c of this.#open) if (!c.busy) c.destroy();
  }

  closeAll(): void {
    for (const c of this.#open) c.destroy();
  }

  #checkDeadlines(): void {
    const now = performance.now();
    for (const c of this.#open) if (c.deadline !== 0 && now >= c.deadline) c.deadlinePassed();
  }
}

/** One client connection while baton's own path serves it; it is the reply of its current exchange. */
class LeanConnection implements ClientReply {
  readonly #socket: Socket;
  readonly #listener: LeanListener;
  readonly #owner: LeanConnections;
  /** Bytes read and not yet answered. */
  #pending: Buffer | null = null;
  #exchange: Exchange | null = null;
  /** The request being answered (null between requests). */
  #current: LeanHead | null = null;
  /** The response in progress has no body (HEAD, 204, 304) / is sent chunked. */
  #noBody = false;
  #chunked = false;
  /** The connection ends after the response in progress. */
  #closeAfter = false;
  /** The client ended its side (then the connection ends: node:http's way without httpAllowHalfOpen). */
  #readEnded = false;
  /** Reading stopped: pipelined bytes over READ_AHEAD_BYTES. */
  #readsPaused = false;
  /** The current request's body (null: none, or the exchange no longer reads it). */
  #body: LeanBody | null = null;
  /** Bytes of the current request's body still to come from the client. */
  #bodyLeft = 0;
  /** Reading stopped: the body's reader (the instance's connection) is behind. */
  #bodyPaused = false;
  /** No request was answered yet: the headers timeout applies, not the idle one. */
  #fresh = true;
  /** node:http has the connection. */
  #handedOff = false;
  /** Frees the current request's slot under its service's in-flight cap (null: no cap). */
  #leaveSlot: (() => void) | null = null;
  // The current request, for the access log (#log null: off, and nothing below is read).
  #log: AccessLog | null = null;
  #start = 0;
  #status = 0;
  #bytes = 0;
  #target: TargetState | null = null;
  #retries = 0;
  #error: string | null = null;
  /** This hop's forwarding lines for the instance (made at the first request: the client is identified by then). */
  #forwarding: Forwarding | null = null;
  /** performance.now() past which the connection is closed (0: none, a request is under way). */
  deadline: number;
  /** The socket is read into the shared buffer (null: through 'data'). */
  readonly #shared: SharedReads | null;
  readonly #onData = (chunk: Buffer): void => this.received(chunk);
  readonly #onEnd = (): void => this.#ended();
  readonly #onClose = (): void => this.#closed();
  readonly #onDrain = (): void => this.#exchange?.resumeUpstream();

  constructor(accepted: Socket, listener: LeanListener, owner: LeanConnections, shareReads: boolean) {
    const shared = shareReads ? sharedReads(accepted, (view) => this.received(view)) : null;
    const socket = shared?.socket ?? accepted;
    if (shared !== null) setClient(socket, clientOf(accepted));
    this.#socket = socket;
    this.#listener = listener;
    this.#owner = owner;
    this.#shared = shared;
    this.deadline = performance.now() + listener.timeouts().headersTimeoutMs;
    if (shared === null) socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onClose);
    socket.on('drain', this.#onDrain);
    socket.on('error', noop); // a reset client surfaces as 'close'
  }

  get busy(): boolean {
    return this.#current !== null;
  }

  /** Bytes read from the client; with shared reads a view valid during this call only (what is kept is copied). */
  received(chunk: Buffer): void {
    if (this.#bodyLeft > 0) {
      const rest = this.#bodyBytes(chunk);
      if (rest === null) return;
      chunk = rest;
    }
    const prev = this.#pending;
    const pending = prev === null ? chunk : Buffer.concat([prev, chunk]);
    this.#pending = pending;
    if (this.#current === null) {
      this.serve();
    } else if (!this.#readsPaused && pending.length > READ_AHEAD_BYTES) {
      this.#readsPaused = true;
      this.#socket.pause();
    }
    // What is left unanswered (a head in pieces, a pipelined request) outlives this read.
    const left = this.#pending;
    if (left !== null && this.#shared !== null && isSharedView(left)) this.#pending = ownCopy(left);
  }

  /** Answer the next request from the bytes read, or hand the connection over. */
  serve(): void {
    const buf = this.#pending;
    if (buf === null || this.#current !== null || this.#handedOff || this.#socket.destroyed) return;
    const l = this.#listener;
    const head = parseLeanHead(buf, 0, l.limits());
    if (head === INCOMPLETE || head === HAND_OFF || l.bypass() || l.closing()) {
      this.#handOff();
      return;
    }
    const url = head.url;
    // baton's endpoints (/_baton/health, /_baton/beta) answer on node:http.
    if (url.length >= 8 && url.charCodeAt(1) === 95 /* _ */ && url.startsWith('/_baton/')) {
      this.#handOff();
      return;
    }
    const route = l.ref.current.route(head.host);
    // A body over the service's limit: node:http's path answers 413 and closes with a lingering close.
    if (route === null || route.gated || (head.bodyLength > 0 && route.maxBodyBytes !== null && head.bodyLength > route.maxBodyBytes)) {
      this.#handOff();
      return;
    }
    const c = route.canary;
    let target: TargetState | undefined;
    let canary = false;
    let setCookie: string | null = null;
    if (c === null) {
      target = pick(route.policy, route.targets, route.rotation, null);
    } else {
      // The split reads the headers as node:http gives them: both paths put a user in the same bucket.
      const choice = chooseWithCanary(route, c, { headers: nodeHeaders(head.rawHeaders), socket: this.#socket });
      target = choice.target;
      canary = choice.canary;
      setCookie = choice.setCookie;
    }
    // Under an in-flight cap: a free slot now, or node:http's path queues (or sheds) the request.
    const cap = route.inflightCap;
    if (cap !== null) {
      const leave = route.shared.admission.tryEnter(cap);
      if (leave === null) {
        this.#handOff();
        return;
      }
      this.#leaveSlot = leave;
    }
    const start = performance.now();
    this.#pending = head.end === buf.length ? null : buf.subarray(head.end);
    let body: LeanBody | null = null;
    if (head.bodyLength > 0) {
      body = new LeanBody(this);
      this.#body = body;
      this.#bodyLeft = head.bodyLength;
      const read = this.#pending;
      this.#pending = null;
      if (read !== null) {
        const rest = this.#bodyBytes(read);
        if (rest !== null) this.#pending = rest;
      }
    }
    this.#current = head;
    this.#fresh = false;
    this.deadline = 0;
    if (head.close) this.#closeAfter = true;
    const log = l.accessLog();
    this.#log = log;
    if (log !== null) {
      this.#start = start;
      this.#status = 0;
      this.#bytes = 0;
      this.#target = null;
      this.#retries = 0;
      this.#error = null;
    }
    if (target === undefined) {
      countNoInstance(route, start);
      this.page('no_instance', false);
      return;
    }
    const out = instanceRequest(head, (this.#forwarding ??= new Forwarding(clientOf(this.#socket))), body ?? undefined);
    new Exchange(this, null, out, route, l.ref, start, canary, setCookie).start(target);
  }

  /**
   * Hand what belongs to the current body from `chunk` to it; returns the
   * bytes after the body (the next request), or null when all of `chunk` was
   * body. Once the exchange stopped reading it (#body null) the rest is dropped.
   */
  #bodyBytes(chunk: Buffer): Buffer | null {
    const take = Math.min(chunk.length, this.#bodyLeft);
    this.#bodyLeft -= take;
    const body = this.#body;
    if (body !== null && !body.destroyed) {
      const piece = take === chunk.length ? chunk : chunk.subarray(0, take);
      // The body's reader may hold it past this read.
      const more = body.push(this.#shared !== null && isSharedView(piece) ? ownCopy(piece) : piece);
      if (this.#bodyLeft === 0) {
        body.push(null);
      } else if (!more && !this.#bodyPaused) {
        this.#bodyPaused = true;
        this.#socket.pause();
      }
    }
    return take === chunk.length ? null : chunk.subarray(take);
  }

  /** The body's reader wants more: read the client again (unless pipelined bytes hold reading). */
  bodyWanted(): void {
    if (!this.#bodyPaused) return;
    this.#bodyPaused = false;
    if (!this.#readsPaused) this.#socket.resume();
  }

  // ---- ClientReply ----

  get gone(): boolean {
    return this.#socket.destroyed;
  }

  attach(exchange: Exchange | null): void {
    this.#exchange = exchange;
  }

  head(status: number, reason: string, fields: ResponseFields, setCookie: string | null): void {
    const noBody = this.#current!.method === 'HEAD' || status === 204 || status === 304 || status < 200;
    this.#status = status;
    let text = `HTTP/1.1 ${status} ${reason || nodeHttp.STATUS_CODES[status] || 'unknown'}\r\n`;
    let length: boolean;
    let date: boolean;
    let hsts: boolean;
    const lines = fields.lines;
    if (lines !== null) {
      // The instance's lines but the hop-by-hop ones, as they came.
      text += lines;
      length = fields.hasLength;
      date = fields.hasDate;
      hsts = fields.hasHsts;
    } else {
      length = false;
      date = false;
      hsts = false;
      const nominated = connectionNominated(fields.connection ?? undefined);
      // With Transfer-Encoding the body was read chunked and its Content-Length is not its length (RFC 9112 6.3).
      const te = fields.transferEncoding;
      const list = fields.list;
      for (let i = 0; i < list.length; i += 2) {
        const name = list[i]!;
        if (isHopByHop(name) || (nominated !== null && nominated.includes(name))) continue;
        if (name === 'content-length') {
          if (te) continue;
          length = true;
        } else if (name === 'date') date = true;
        else if (name === 'strict-transport-security') hsts = true;
        text += `${name}: ${list[i + 1]!}\r\n`;
      }
    }
    if (setCookie !== null) text += `set-cookie: ${setCookie}\r\n`;
    if (!date) text += `date: ${httpDate()}\r\n`;
    // The listener's own lines (HSTS): an instance's own value of the field wins.
    const extra = this.#listener.extraLines;
    if (extra !== '' && !hsts) text += extra;
    text += this.#connectionLines();
    this.#noBody = noBody;
    this.#chunked = !noBody && !length;
    if (this.#chunked) {
      // Chunks and their framing: corked, sent together at the end of this tick.
      const socket = this.#socket;
      socket.cork();
      socket.write(`${text}transfer-encoding: chunked\r\n\r\n`, 'latin1');
      process.nextTick(uncork, socket);
      return;
    }
    // The head waits for the body's first piece, usually from the same read, or
    // the end of the response, or the end of that read (readDone): one write.
    this.#headText = `${text}\r\n`;
  }

  /** The response's head, not written yet (a length-framed response whose body has not come). */
  #headText: string | null = null;

  readDone(): void {
    const text = this.#headText;
    if (text === null) return;
    this.#headText = null;
    this.#socket.write(text, 'latin1');
  }

  body(chunk: Buffer): boolean {
    // An empty chunk would end a chunked body early.
    if (this.#noBody || chunk.length === 0) return true;
    this.#bytes += chunk.length;
    const socket = this.#socket;
    if (!this.#chunked) {
      const text = this.#headText;
      if (text === null) return socket.write(ownCopy(chunk));
      this.#headText = null;
      // A small body goes out with the head as one string (latin1: byte for byte), one write,
      // without a copy of the view; a large one after it, corked together.
      if (chunk.length <= HEAD_WITH_BODY_BYTES) return socket.write(text + chunk.toString('latin1'), 'latin1');
      socket.cork();
      socket.write(text, 'latin1');
      const more = socket.write(ownCopy(chunk));
      socket.uncork();
      return more;
    }
    socket.cork();
    socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
    socket.write(ownCopy(chunk));
    const more = socket.write('\r\n', 'latin1');
    socket.uncork();
    return more;
  }

  end(): void {
    if (this.#chunked) this.#socket.write('0\r\n\r\n', 'latin1');
    else this.readDone();
    this.#responseDone();
  }

  cut(): void {
    this.#headText = null;
    this.destroy();
  }

  page(code: ProxyErrorCode, closeConnection: boolean): void {
    // (A body not yet whole closes the connection too: #connectionLines.)
    if (closeConnection) this.#closeAfter = true;
    const head = this.#current!;
    const answer = errorResponse(code, head.accept, head.method === 'HEAD', `date: ${httpDate()}\r\n${this.#listener.extraLines}${this.#connectionLines()}`);
    this.#status = answer.status;
    this.#bytes = answer.bodyBytes;
    this.#error = code;
    if (!this.#socket.destroyed) this.#socket.write(answer.raw);
    this.#responseDone();
  }

  noteTarget(target: TargetState): void {
    this.#target = target;
  }

  noteRetry(): void {
    this.#retries++;
  }

  // ---- the connection ----

  destroy(): void {
    this.#socket.destroy();
  }

  /** The headers timeout of a new connection (node:http's 408), or the idle timeout between requests. */
  deadlinePassed(): void {
    this.deadline = 0;
    if (this.#fresh) answerClientError(new HeadersTimeoutError('no request head within the headers timeout'), this.#socket);
    else this.#socket.destroy();
  }

  #connectionLines(): string {
    // A response before the request's body arrived whole (an early answer, an error): the rest of the body is not read, the connection ends.
    if (!this.#closeAfter && !this.#readEnded && this.#bodyLeft === 0 && !this.#listener.closing()) return this.#owner.keepAliveLines();
    this.#closeAfter = true;
    return 'connection: close\r\n';
  }

  /** The access log's line for the current request (`finished`: its whole response was written). */
  #logLine(finished: boolean): void {
    const log = this.#log;
    const head = this.#current;
    if (log === null || head === null) return;
    this.#log = null;
    log.leanExchange(this.#socket, this.#listener.ref, {
      method: head.method,
      url: head.url,
      host: head.host,
      rawHeaders: head.rawHeaders,
      start: this.#start,
      status: this.#status,
      bytes: this.#bytes,
      target: this.#target,
      error: this.#error,
      retries: this.#retries,
      finished,
    });
  }

  #responseDone(): void {
    if (this.#log !== null) this.#logLine(true);
    this.#freeSlot();
    this.#current = null;
    this.#exchange = null;
    this.#body = null;
    const socket = this.#socket;
    if (this.#closeAfter || (this.#readEnded && this.#pending === null)) {
      this.#owner.forget(this);
      // The rest of a body the client still sends is read and dropped while the response drains (a reset would destroy it).
      if (this.#bodyLeft > 0) lingerOnClose(socket);
      socket.destroySoon();
      return;
    }
    this.deadline = performance.now() + this.#listener.timeouts().clientIdleTimeoutMs + KEEP_ALIVE_GRACE_MS;
    if (this.#readsPaused || this.#bodyPaused) {
      this.#readsPaused = false;
      this.#bodyPaused = false;
      socket.resume();
    }
    // A pipelined request goes on once this response's last write is queued, outside the pool's callback.
    if (this.#pending !== null) process.nextTick(serveNext, this);
  }

  /**
   * node:http takes the connection with the bytes not yet answered (never
   * during a response: its answers would interleave with this one's). Its
   * listeners read the socket's handle directly, so the bytes are replayed as
   * a 'data' event (as after a PROXY protocol header).
   */
  #handOff(): void {
    this.#handedOff = true;
    this.#owner.forget(this);
    const socket = this.#socket;
    socket.off('data', this.#onData);
    socket.off('end', this.#onEnd);
    socket.off('close', this.#onClose);
    socket.off('drain', this.#onDrain);
    // node:http reads the socket's Readable from now on, and may keep what it is given.
    this.#shared?.release();
    let pending = this.#pending;
    if (pending !== null && isSharedView(pending)) pending = ownCopy(pending);
    this.#pending = null;
    this.#listener.handOff(socket);
    if (pending !== null) socket.emit('data', pending);
  }

  #ended(): void {
    this.#readEnded = true;
    // The connection is already closing after its last response: what the client sent after it is not answered.
    if (this.#closeAfter && this.#current === null) return;
    if (this.#current !== null) {
      // As node:http (without httpAllowHalfOpen): a client that ends its side has gone; its request is abandoned.
      this.#closeAfter = true;
      this.#owner.forget(this);
      this.#exchange?.clientClosed();
      this.#socket.end();
      return;
    }
    if (this.#pending !== null) {
      // A request whose head did not arrive whole before the end: node:http answers it.
      this.#handOff();
      return;
    }
    this.#owner.forget(this);
    this.#socket.end();
  }

  #freeSlot(): void {
    const leave = this.#leaveSlot;
    if (leave === null) return;
    this.#leaveSlot = null;
    leave();
  }

  #closed(): void {
    this.#owner.forget(this);
    if (this.#log !== null) this.#logLine(false);
    this.#freeSlot();
    this.#exchange?.clientClosed();
  }
}

/**
 * A request body on the lean path: the bytes of its Content-Length as the
 * client sends them. The exchange's upstream connection reads it as it reads
 * node:http's requests (data, pause, resume); when it falls behind, the
 * client's socket stops being read until it asks for more.
 */
class LeanBody extends Readable {
  readonly #conn: LeanConnection;

  constructor(conn: LeanConnection) {
    super();
    this.#conn = conn;
  }

  override _read(): void {
    this.#conn.bodyWanted();
  }
}

function noop(): void {}

/** node:http's code for the headers timeout, which answerClientError answers with 408. */
class HeadersTimeoutError extends Error {
  readonly code = 'ERR_HTTP_REQUEST_TIMEOUT';
}
