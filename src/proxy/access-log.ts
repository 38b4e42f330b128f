// The proxy's access log (`proxy.access_log`): one JSON line per answered
// request or WebSocket tunnel, written when the exchange ends (nginx's
// access_log, HAProxy's httplog, Caddy's JSON access log). Off by default;
// nothing here runs on the hot path then (the hook in dispatch.ts is one null
// test). Lines go through one buffered stream per file, never a sync write per
// request; when the disk is slower than the traffic, lines beyond MAX_PENDING
// bytes waiting are dropped and counted (status shows the count) instead of
// buffered without bound. The file is rotated by size like an instance log
// (<file> → <file>.1 …, `keep` older files) and reopened by `baton reload`
// (so an outside logrotate can move it away first).
// With proxy workers (`proxy.workers` > 1) each worker's AccessLog forwards
// its lines (batched, bounded the same way) to the control plane's, which
// alone writes, rotates and reopens the file: one writer per file.
// A request the HTTP/1.1 parser refuses before there is a request (400, 408,
// 431: limits.ts answerClientError) gets a line too, with what is known of it
// (logRefusal); that path runs only for such refusals.

import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { createWriteStream, fstatSync, openSync, renameSync, rmSync, type WriteStream } from 'node:fs';
import { BatonError } from '../core/errors.ts';
import type { IncomingMessage } from 'node:http';
import type net from 'node:net';
import type { Logger } from '../core/log.ts';
import { isIP } from 'node:net';
import { clientOf } from './client.ts';
import { ownAnswer } from './error-page.ts';
import type { BatonResponse, SnapshotRef } from './forwarder.ts';
import type { TargetState } from './target.ts';

/** Where lines go: a file path, or the daemon's own JSON-lines log stream (stdout). */
export interface AccessLogConfig {
  /** An absolute file path, or "stdout". */
  path: string;
  /** Rotate the file past this size (bytes); 0 = never. */
  maxBytes: number;
  /** Older files kept (<path>.1 …). */
  keep: number;
}

/** Bytes of lines waiting for the disk beyond which new lines are dropped (counted). */
export const MAX_PENDING = 1024 * 1024;

/** What an upgrade's tunnel tells the access log about itself (set on the client socket). */
export interface UpgradeNote {
  status: number;
  /** baton's refusal code (x-baton-error), or null. */
  error: string | null;
  target: TargetState | null;
  retries: number;
}

const kNote = Symbol('baton.access.upgrade');
type Noted = net.Socket & { [kNote]?: UpgradeNote };

/** Record what answered an upgrade (the tunnel's target, its status, or baton's refusal). Cheap: one property. */
export function noteUpgrade(socket: net.Socket, status: number, error: string | null, target: TargetState | null, retries = 0): void {
  (socket as Noted)[kNote] = { status, error, target, retries };
}

/** The answer to a noted upgrade: the instance's status, or baton's refusal. */
export function noteUpgradeStatus(socket: net.Socket, status: number, error: string | null): void {
  const note = (socket as Noted)[kNote];
  if (note === undefined) noteUpgrade(socket, status, error, null);
  else {
    note.status = status;
    note.error = error;
  }
}

/** The client as the log names it, and the connection's own client (the TCP peer, or a PROXY protocol header's). */
interface Who {
  client: string;
  peer: string;
}

/**
 * The connection's client, or, when that is a trusted proxy, the address it
 * put last in X-Forwarded-For (the client it saw: nginx's realip with one
 * hop). Read at the request's start: an HTTP/2 stream's socket is gone once
 * it has closed.
 */
function whoAsked(req: IncomingMessage, socket: net.Socket): Who {
  const xff = req.headers['x-forwarded-for'];
  return whoFrom(socket, typeof xff === 'string' ? xff : undefined);
}

function whoFrom(socket: net.Socket, xff: string | undefined): Who {
  const c = clientOf(socket);
  const peer = c.address;
  if (!c.trusted || xff === undefined) return { client: peer, peer };
  const last = xff.slice(xff.lastIndexOf(',') + 1).trim();
  return { client: isIP(last) !== 0 ? last : peer, peer };
}

/** The last X-Forwarded-For value of a [name, value, ...] list (its last address is the client a trusted proxy saw). */
function lastForwardedFor(raw: readonly string[]): string | undefined {
  for (let i = raw.length - 2; i >= 0; i -= 2) if (raw[i]!.length === 15 && raw[i]!.toLowerCase() === 'x-forwarded-for') return raw[i + 1];
  return undefined;
}

/** What a line says of how the exchange ended. */
function outcomeOf(finished: boolean, error: string | null, status: number, retries: number): string {
  if (!finished) return 'client_gone';
  if (error !== null) return error === 'at_capacity' ? 'shed' : error;
  if (status >= 500) return 'app_5xx';
  return retries > 0 ? 'retried' : 'ok';
}

/** A request of baton's own HTTP/1.1 path (src/proxy/h1/), as its connection saw it. */
export interface LeanExchangeNote {
  method: string;
  url: string;
  host: string;
  rawHeaders: readonly string[];
  /** performance.now() at its arrival. */
  start: number;
  status: number;
  /** Body bytes: relayed from the instance, or baton's page. */
  bytes: number;
  target: TargetState | null;
  /** baton's answer code (x-baton-error), or null. */
  error: string | null;
  retries: number;
  /** The whole response was written (false: the client went away first). */
  finished: boolean;
}

/** Figures of the access log for `baton status`. */
export interface AccessLogStats {
  path: string;
  written: number;
  dropped: number;
}

/**
 * Where a proxy worker's lines go instead of a file (src/daemon/worker-access-log.ts):
 * takes one whole line (ending in a newline); false when it was not taken (dropped, counted).
 */
export type AccessLineForward = (line: string) => boolean;

/** An answer baton wrote on a connection whose request the HTTP parser refused (limits.ts). */
export interface Refusal {
  status: number;
  /** baton's code for the answer (its x-baton-error): the line's outcome. */
  outcome: string;
  /** Why the parser refused: its error code (llhttp's `HPE_…`, node's `ERR_HTTP_REQUEST_TIMEOUT`). */
  reason: string;
  /** Body bytes of the answer. */
  bytes: number;
}

/**
 * The access log of this process's proxy, for refusals: node:http's
 * 'clientError' hands over the connection, not the proxy that accepted it.
 * The daemon runs one proxy per process (each proxy worker too), so this is
 * the log opened last and not yet closed.
 */
const refusals: { log: AccessLog | null } = { log: null };

/** One line for a request the HTTP parser refused on `socket` (nothing when the access log is off). */
export function logRefusal(socket: net.Socket, refusal: Refusal): void {
  refusals.log?.refused(socket, refusal);
}

export class AccessLog {
  readonly #cfg: AccessLogConfig;
  readonly #logger: Logger;
  readonly #forward: AccessLineForward | null;
  #stream: WriteStream | null = null;
  /** Bytes in the current file (rotation). */
  #size = 0;
  #written = 0;
  #dropped = 0;
  #closed = false;
  #warnedDrop = false;

  /** With `forward`, lines go there (a proxy worker's), and no file is opened here. */
  constructor(cfg: AccessLogConfig, logger: Logger, forward: AccessLineForward | null = null) {
    this.#cfg = cfg;
    this.#logger = logger;
    this.#forward = forward;
    if (cfg.path !== 'stdout' && forward === null) this.#open();
    refusals.log = this;
  }

  get config(): AccessLogConfig {
    return this.#cfg;
  }

  stats(): AccessLogStats {
    return { path: this.#cfg.path, written: this.#written, dropped: this.#dropped };
  }

  /** The hook for an HTTP request: one line when its response closes. */
  request(req: IncomingMessage, res: BatonResponse, ref: SnapshotRef, start: number): void {
    // Read now: an HTTP/2 stream's socket is gone once it has closed.
    const who = whoAsked(req, req.socket);
    res.once('close', () => this.#requestDone(req, res, ref, start, who));
  }

  /** The hook for an upgrade: one line when the client's socket closes (the tunnel's end, or baton's refusal). */
  upgrade(req: IncomingMessage, socket: net.Socket, ref: SnapshotRef, start: number): void {
    const before = socket.bytesWritten;
    const who = whoAsked(req, socket);
    socket.once('close', () => this.#upgradeDone(req, socket, ref, start, before, who));
  }

  /**
   * The hook for a refused request (logRefusal): no request line or Host was
   * parsed, so method, host and path are null rather than guessed, as are the
   * duration and the service; `reason` names the parser's error.
   */
  refused(socket: net.Socket, r: Refusal): void {
    if (this.#closed) return;
    const peer = clientOf(socket).address;
    this.#emit({
      time: new Date().toISOString(),
      client: peer,
      peer,
      method: null,
      host: null,
      path: null,
      proto: 'h1',
      status: r.status,
      bytes: r.bytes,
      ms: null,
      service: null,
      release: null,
      instance: null,
      outcome: r.outcome,
      retries: 0,
      reason: r.reason,
    });
  }

  /** Close and open the file again (a reload: an outside rotation moved it away). */
  reopen(): void {
    if (this.#cfg.path === 'stdout' || this.#closed || this.#forward !== null) return;
    const old = this.#stream;
    this.#open();
    old?.end();
  }

  /** Flush what is buffered and close the file. */
  async close(): Promise<void> {
    this.#closed = true;
    if (refusals.log === this) refusals.log = null;
    const s = this.#stream;
    this.#stream = null;
    if (s === null) return;
    await new Promise<void>((resolve) => s.end(resolve));
  }

  /** The line of a request answered on baton's own HTTP/1.1 path, written by its connection when the exchange ends. */
  leanExchange(socket: net.Socket, ref: SnapshotRef, n: LeanExchangeNote): void {
    const who = whoFrom(socket, lastForwardedFor(n.rawHeaders));
    this.#line(n.method, n.url, n.host, 'h1', who, ref, n.start, n.status, n.bytes, n.target, outcomeOf(n.finished, n.error, n.status, n.retries), n.retries);
  }

  #requestDone(req: IncomingMessage, res: BatonResponse, ref: SnapshotRef, start: number, who: Who): void {
    const own = ownAnswer(res);
    const error = own?.error ?? null;
    const status = res.statusCode;
    // baton's own answer: its page's size; the instance's: the body bytes relayed.
    const bytes = own !== undefined ? own.bytes : res.relayedBytes;
    this.#requestLine(req, who, ref, start, status, bytes, res.target, outcomeOf(res.writableFinished, error, status, res.retries), res.retries);
  }

  #upgradeDone(req: IncomingMessage, socket: net.Socket, ref: SnapshotRef, start: number, before: number, who: Who): void {
    const note = (socket as Noted)[kNote];
    const status = note?.status ?? 0;
    const outcome = outcomeOf(note !== undefined, note?.error ?? null, status, note?.retries ?? 0);
    this.#requestLine(req, who, ref, start, status, socket.bytesWritten - before, note?.target ?? null, outcome, note?.retries ?? 0);
  }

  #requestLine(req: IncomingMessage, who: Who, ref: SnapshotRef, start: number, status: number, bytes: number, target: TargetState | null, outcome: string, retries: number): void {
    this.#line(req.method ?? null, req.url ?? '', req.headers.host, req.httpVersionMajor === 2 ? 'h2' : 'h1', who, ref, start, status, bytes, target, outcome, retries);
  }

  #line(
    method: string | null,
    url: string,
    host: string | undefined,
    proto: 'h1' | 'h2',
    who: Who,
    ref: SnapshotRef,
    start: number,
    status: number,
    bytes: number,
    target: TargetState | null,
    outcome: string,
    retries: number,
  ): void {
    if (this.#closed) return;
    const q = url.indexOf('?');
    // The query is left out: it can carry secrets (tokens, baton's beta links). Headers never appear.
    const fields = {
      time: new Date().toISOString(),
      client: who.client,
      peer: who.peer,
      method,
      host: host ?? null,
      path: q < 0 ? url : url.slice(0, q),
      proto,
      status,
      bytes,
      ms: Math.round((performance.now() - start) * 10) / 10,
      service: target?.service ?? ref.current.route(host)?.name ?? null,
      release: target?.release ?? null,
      instance: target?.id ?? null,
      outcome,
      retries,
    };
    this.#emit(fields);
  }

  #emit(fields: object): void {
    // On stdout a line is one of the daemon's own JSON log lines.
    const line = (this.#cfg.path === 'stdout' ? JSON.stringify({ level: 'info', msg: 'access', ...fields }) : JSON.stringify(fields)) + '\n';
    if (this.#forward === null) this.#write(line, 1);
    else if (this.#forward(line)) this.#written++;
    else this.#drop(1);
  }

  /**
   * Whole lines made by a proxy worker (a batch of `count`): written as one
   * write, under the same bound as this process's own lines, or dropped and
   * counted. Rotation falls between batches.
   */
  writeLines(text: string, count: number): void {
    if (this.#closed || this.#forward !== null) return;
    this.#write(text, count);
  }

  #write(text: string, count: number): void {
    if (this.#cfg.path === 'stdout') {
      if (process.stdout.writableLength > MAX_PENDING) return this.#drop(count);
      process.stdout.write(text);
      this.#written += count;
      return;
    }
    const s = this.#stream;
    if (s === null || s.writableLength > MAX_PENDING) return this.#drop(count);
    s.write(text);
    this.#written += count;
    this.#size += Buffer.byteLength(text);
    if (this.#cfg.maxBytes > 0 && this.#size >= this.#cfg.maxBytes) this.#rotate();
  }

  #drop(count: number): void {
    this.#dropped += count;
    if (!this.#warnedDrop) {
      // Once per file opened: a slow disk must not flood the daemon's log too.
      this.#warnedDrop = true;
      this.#logger.warn('access log: lines dropped (the disk is slower than the traffic)', { path: this.#cfg.path });
    }
  }

  /** Open (or create) the file; a path that cannot be opened is refused here, at start-up or reload, not dropped silently later. */
  #open(): void {
    const file = this.#cfg.path;
    let fd: number;
    try {
      fd = openSync(file, 'a', 0o640);
      this.#size = fstatSync(fd).size;
    } catch (err) {
      throw new BatonError('CONFIG_INVALID', `proxy.access_log: cannot open ${file}: ${(err as Error).message}`);
    }
    const s = createWriteStream('', { fd, flags: 'a' });
    s.on('error', (err) => {
      // A file that cannot be written any more (full disk): lines are dropped and counted.
      this.#logger.error('access log: cannot write', { path: file, error: err.message });
      if (this.#stream === s) this.#stream = null;
    });
    this.#stream = s;
    this.#warnedDrop = false;
  }

  /** <file> → <file>.1 → … → <file>.<keep>, as the instance logs; lines still buffered go to <file>.1 with their fd. */
  #rotate(): void {
    const file = this.#cfg.path;
    this.#stream?.end();
    this.#stream = null;
    try {
      if (this.#cfg.keep <= 0) {
        rmSync(file, { force: true });
      } else {
        for (let i = this.#cfg.keep - 1; i >= 1; i--) {
          try {
            renameSync(`${file}.${i}`, `${file}.${i + 1}`);
          } catch {
            // not there yet
          }
        }
        renameSync(file, `${file}.1`);
      }
    } catch (err) {
      this.#logger.error('access log: cannot rotate', { path: file, error: (err as Error).message });
    }
    try {
      this.#open();
    } catch (err) {
      // Lines are dropped (and counted) until a reload opens it again.
      this.#logger.error('access log: cannot reopen after rotation', { path: file, error: (err as Error).message });
    }
  }
}
