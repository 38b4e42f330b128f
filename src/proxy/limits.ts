// What one request may carry before baton refuses it, and the answers it then
// gives: the request head (431 for its size or its number of fields, 414 for
// the URL), the body per service (413), and the parser's own refusals written
// with baton's pages instead of Node's empty ones.
//
// The head's size is the parser's bound (Node's maxHeaderSize, read when a
// connection is accepted): llhttp counts the request target with the header
// fields, so a URL longer than the whole head's limit gets 431 from the parser
// before the URL check below can answer 414. The count of fields and the URL's
// length are checked per request, so a reload changes them at once.
//
// A parser's refusal answered here is written to the access log when it is on
// (access-log.ts logRefusal), as nginx logs its 400/408/414 answers.

import { Buffer } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { DEFAULT_MAX_HEADER_SIZE, DEFAULT_MAX_HEADERS, DEFAULT_MAX_URL_LENGTH } from '../config/defaults.ts';
import { rawErrorResponse, type ProxyErrorCode } from './error-page.ts';
import { logRefusal } from './access-log.ts';

/** Bounds of a request head (proxy: in the config file). */
export interface RequestLimits {
  /** Bytes of the request line and header fields together (the parser's bound): 431 beyond. */
  readonly maxHeaderSize: number;
  /** Header fields in one request: 431 beyond. */
  readonly maxHeaders: number;
  /** Bytes of the request target: 414 beyond. */
  readonly maxUrlLength: number;
}

export const DEFAULT_REQUEST_LIMITS: RequestLimits = {
  maxHeaderSize: DEFAULT_MAX_HEADER_SIZE,
  maxHeaders: DEFAULT_MAX_HEADERS,
  maxUrlLength: DEFAULT_MAX_URL_LENGTH,
};

/**
 * The limit a parsed request head is over, or null. Node keeps every field
 * (the servers set maxHeadersCount to 0: no silent truncation), which the
 * parser's byte bound keeps finite.
 */
export function headOverLimit(req: IncomingMessage, limits: RequestLimits): ProxyErrorCode | null {
  const url = req.url;
  // The parser gives the target one character per byte (latin1).
  if (url !== undefined && url.length > limits.maxUrlLength) return 'url_too_long';
  if (req.rawHeaders.length > limits.maxHeaders * 2) return 'too_many_headers';
  return null;
}

/** Node's own answer for an overlong chunk extension (kept: it is not a limit of baton's). */
const CHUNK_EXTENSIONS_TOO_LARGE = Buffer.from('HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n\r\n', 'latin1');

/** The answer to a parser's error, and what the access log says of it. */
interface ClientErrorAnswer {
  raw: Buffer;
  status: number;
  /** baton's code (the page's x-baton-error). */
  outcome: string;
  /** Body bytes. */
  bytes: number;
}

function ownPage(code: ProxyErrorCode): ClientErrorAnswer {
  const raw = rawErrorResponse(code);
  return { raw, status: Number(raw.toString('latin1', 9, 12)), outcome: code, bytes: raw.length - raw.indexOf('\r\n\r\n') - 4 };
}

function clientErrorAnswer(code: string | undefined): ClientErrorAnswer {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return ownPage('headers_too_large');
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return ownPage('headers_timeout');
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { raw: CHUNK_EXTENSIONS_TOO_LARGE, status: 413, outcome: 'chunk_extensions_too_large', bytes: 0 };
    default:
      return ownPage('bad_request');
  }
}

/**
 * The servers' 'clientError' listener: what Node does by default (answer
 * unless a response is under way on the connection, then destroy it), with
 * baton's pages, which name the limit that was passed. An answer to a request
 * that never became one gets its access log line here; a request already
 * under way on the connection gets its own when its response closes, and a
 * connection that timed out before sending a byte (a browser's preconnect)
 * none, as in nginx.
 */
export function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  const inProgress = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (socket.writable && (inProgress == null || inProgress.headersSent !== true)) {
    const answer = clientErrorAnswer(err.code);
    if (inProgress == null && (socket as Socket).bytesRead > 0) {
      logRefusal(socket as Socket, { status: answer.status, outcome: answer.outcome, reason: err.code ?? 'unknown', bytes: answer.bytes });
    }
    // Closed once the answer is out, not at once: a TLS socket encrypts and
    // writes later than this call (over a stream TLS was handed from
    // JavaScript, listeners.ts), and destroying it now dropped the answer.
    // Bounded: nothing more is read, and a peer that never takes ~200 bytes is cut.
    socket.removeAllListeners('data');
    socket.on('error', ignore);
    socket.end(answer.raw, () => socket.destroy());
    setTimeout(() => socket.destroy(), ANSWER_FLUSH_MS).unref();
    return;
  }
  socket.destroy(err);
}

/** How long a refused connection's answer may take to leave before the connection is cut. */
const ANSWER_FLUSH_MS = 5000;

function ignore(): void {}

// ---- the body (per service) ----

/** The body's declared length is over `max` (Content-Length, checked before any byte is read). */
export function declaredBodyOver(req: IncomingMessage, max: number): boolean {
  const cl = req.headers['content-length'];
  // llhttp accepts only digits here (and refuses two different lengths).
  return cl !== undefined && Number(cl) > max;
}

/** The body passed `max` bytes while it streamed (a body without Content-Length). */
export class BodyTooLargeError extends Error {
  readonly code = 'BATON_BODY_TOO_LARGE';
}

/**
 * The request's body as the instance gets it when its length is not declared
 * (chunked; HTTP/2 without content-length): at most `max` bytes pass, then
 * the iteration fails and the upstream client aborts its request, so the instance
 * sees its connection closed before the body's end. `chunk` counts every chunk
 * passed on; `over` is called before the iteration fails. The request itself is left alone (not destroyed): baton still
 * answers on its connection.
 */
export async function* limitedBody(req: IncomingMessage, max: number, chunk: (n: number) => void, over: () => void): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const c of req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    total += c.length;
    if (total > max) {
      over();
      throw new BodyTooLargeError(`request body over ${max} bytes`);
    }
    chunk(c.length);
    yield c;
  }
}

/** How long a connection closed after a refused body keeps reading what its client still sends. */
export const LINGER_MS = 5000;

/**
 * Close `socket` after the response being written on it without a reset: once
 * the response is out, Node ends the connection; from then on, what the
 * client still sends (the rest of a refused body) is read and dropped for
 * LINGER_MS. Closing a socket with unread data makes the kernel answer with a
 * reset, which can destroy the response before the client has read it
 * (nginx's lingering close, for the same reason).
 */
export function lingerOnClose(socket: Socket | null): void {
  if (socket === null || typeof socket.destroySoon !== 'function') return;
  // Node calls destroySoon() once a response with Connection: close is finished.
  Object.defineProperty(socket, 'destroySoon', { value: lingeringClose, configurable: true, writable: true });
}

function drop(): void {}

function lingeringClose(this: Socket): void {
  // The HTTP parser reads nothing more: the rest is dropped unparsed.
  this.removeAllListeners('data');
  this.on('data', drop);
  this.on('error', drop);
  const timer = setTimeout(() => this.destroy(), LINGER_MS);
  this.once('close', () => clearTimeout(timer));
  this.once('end', () => this.destroy());
  this.resume();
  this.end();
}
