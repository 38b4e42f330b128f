// An instance's HTTP/1.1 responses, parsed incrementally and strictly. Pure (no I/O).
//
// The framing decides where one response ends and the next begins on a pooled
// connection: a response read too short or too long would hand one user's bytes
// to another user's request. So whatever is ambiguous is an error (the
// connection is closed, never reused): differing Content-Length values, a
// malformed chunk size, obs-fold, bare CR or LF, control characters, a head
// over its bound. What is clear but unusual (a body delimited by the close of
// the connection, Transfer-Encoding without chunked last, a Transfer-Encoding
// next to a Content-Length) is read as RFC 9112 6.3 says, and the connection
// is not reused after it.

import { Buffer } from 'node:buffer';
import { UpstreamError } from './errors.ts';
import { connectionNamesFields, fieldList, nameAt, sameName, tokenEnd } from './tokens.ts';

/** Headers as an object: lowercase names, repeated names as arrays (node:http's form). */
export type ResponseHeaders = Record<string, string | string[]>;

/**
 * An instance's response fields as read: a flat list in the order received,
 * and the framing facts the proxy needs, so the hot path never builds an
 * object keyed by names (each response's own shape) to read and write them.
 */
export class ResponseFields {
  /** The Connection field's value (repeated fields joined by commas), or null. */
  readonly connection: string | null;
  /** A Transfer-Encoding field came: the body was read as its coding says, and a Content-Length beside it is not its length. */
  readonly transferEncoding: boolean;
  /**
   * The field lines a client on HTTP/1.1 gets as they came: all but the
   * hop-by-hop ones, each "name: value\r\n". Null when the fields must be
   * rewritten one by one (a Transfer-Encoding, a Connection naming other
   * fields, a line not of that exact form): then `list` is what to read.
   */
  readonly lines: string | null;
  /** Fields among `lines` the client's side adds when absent. */
  readonly hasLength: boolean;
  readonly hasDate: boolean;
  readonly hasHsts: boolean;
  /** The head: the status line and the field lines, each with its CRLF; the list is read from it when asked for. */
  readonly #text: string;
  #list: string[] | null = null;

  constructor(text: string, connection: string | null, transferEncoding: boolean, lines: string | null, hasLength: boolean, hasDate: boolean, hasHsts: boolean) {
    this.#text = text;
    this.connection = connection;
    this.transferEncoding = transferEncoding;
    this.lines = lines;
    this.hasLength = hasLength;
    this.hasDate = hasDate;
    this.hasHsts = hasHsts;
  }

  /** [lowercase name, value, ...] as received (values without surrounding whitespace). */
  get list(): string[] {
    return (this.#list ??= fieldList(this.#text, lowerName));
  }

  /** node:http's form: a plain object, repeated names as arrays; `__proto__` is never a key (it would set the prototype). */
  toObject(): ResponseHeaders {
    const out: ResponseHeaders = {};
    const list = this.list;
    for (let i = 0; i < list.length; i += 2) {
      const name = list[i]!;
      const value = list[i + 1]!;
      if (name === '__proto__') continue;
      const prev = Object.hasOwn(out, name) ? out[name] : undefined;
      if (prev === undefined) out[name] = value;
      else if (typeof prev === 'string') out[name] = [prev, value];
      else prev.push(value);
    }
    return out;
  }
}

/**
 * What the parser reports, in order: onHead once for the final response, then
 * onBody any number of times. The end is not a callback: execute() returns
 * where the response ended, and `done` says it did, so the caller sees any
 * byte after it before it hands the connection to another request.
 */
export interface ResponseSink {
  onHead(status: number, reason: string, fields: ResponseFields): void;
  /** `chunk` is a view of the buffer given to execute(): copy it to keep it past the call. */
  onBody(chunk: Buffer): void;
}

/** A malformed response (the connection must be closed). */
export class ResponseProtocolError extends UpstreamError {
  constructor(message: string) {
    super('BATON_UPSTREAM_PROTOCOL', message);
  }
}

/** Bounds against an instance gone wrong (Node's own server limit for a head is 16 KiB; instances may add more). */
export const MAX_HEAD_BYTES = 64 * 1024;
const MAX_HEADER_LINES = 256;
const MAX_CHUNK_LINE = 4096;
const MAX_TRAILER_BYTES = 16 * 1024;

type State =
  | 'head' // reading a status line and header fields
  | 'length' // a Content-Length body
  | 'chunk-size' // a chunk-size line
  | 'chunk-data'
  | 'chunk-end' // the CRLF after a chunk's data
  | 'trailers' // trailer fields after the last chunk, up to an empty line
  | 'close' // a body delimited by the end of the connection
  | 'done';

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const DEL = 127;
const COLON = 58;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
/** The first bytes of a read taken into one string to find the head's end in (most heads are shorter; longer ones are searched in the Buffer). */
const PROBE_BYTES = 1024;
/** A field value's characters (RFC 9110 5.5): HTAB, SP, VCHAR, obs-text. */
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
/** A field name (RFC 9110 5.1, token). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const DIGITS = /^[0-9]+$/;
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,13})[ \t]*(?:;[\t\x20-\x7e\x80-\xff]*)?$/;

/** Per latin1 character code: 1 for a field value's characters (HTAB, SP, VCHAR, obs-text). */
const FIELD_CHAR = new Uint8Array(256);
for (let c = 0; c < 256; c++) if (c === HTAB || (c >= 0x20 && c <= 0x7e) || c >= 0x80) FIELD_CHAR[c] = 1;

/** `"HTTP/1."` as character codes. */
const HTTP1 = [72, 84, 84, 80, 47, 49, 46];

export class ResponseParser {
  #sink: ResponseSink | null = null;
  #state: State = 'done';
  /** The request was HEAD: a response has no body whatever its fields say. */
  #head = false;
  /** Bytes of a head, a chunk-size line or trailers that arrived split across reads. */
  #pending: Buffer | null = null;
  #remaining = 0;
  #keepAlive = false;
  /** The CR after a chunk's data was read (its LF may come in the next read). */
  #chunkCr = false;
  /** halt() was called: the rest of the current execute() is ignored. */
  #halted = false;
  /** yieldNow() was called during execute(): it returns where it stopped, the caller keeps the rest. */
  #yielded = false;
  /** The server's Keep-Alive timeout hint (ms), 0 when it gave none. */
  keepAliveHintMs = 0;

  /** Expect the response to a new request, reported to `sink`. */
  expect(method: string, sink: ResponseSink): void {
    this.#sink = sink;
    this.#state = 'head';
    this.#head = method === 'HEAD';
    this.#pending = null;
    this.#remaining = 0;
    this.#keepAlive = false;
    this.#chunkCr = false;
    this.#halted = false;
    this.keepAliveHintMs = 0;
  }

  /**
   * From a sink callback: stop after this piece of body, so a slow client is
   * not handed the rest of the read; execute() returns where it stopped.
   */
  yieldNow(): void {
    this.#yielded = true;
  }

  /** Stop: the exchange was aborted from a sink callback; nothing more is reported. */
  halt(): void {
    this.#halted = true;
    this.#state = 'done';
  }

  /** The final response's head was read (or nothing is expected). */
  get headSeen(): boolean {
    return this.#state !== 'head';
  }

  /** The response is complete. */
  get done(): boolean {
    return this.#state === 'done' && !this.#halted;
  }

  /** The complete response leaves the connection fit for another request (framing known, keep-alive). */
  get reusable(): boolean {
    return this.#keepAlive;
  }

  /**
   * Parse `data`; returns the index where parsing stopped: data.length, the
   * end of the response when it completed in `data` (the caller decides what
   * bytes after it mean), or where a sink callback called yieldNow(). Throws ResponseProtocolError on malformed input
   * (the connection must then be closed).
   */
  execute(data: Buffer): number {
    let at = 0;
    const end = data.length;
    this.#yielded = false;
    while (at < end && !this.#halted && !this.#yielded) {
      switch (this.#state) {
        case 'head':
          at = this.#readHead(data, at);
          break;
        case 'length':
          at = this.#readBody(data, at, 'done');
          break;
        case 'chunk-size':
          at = this.#readChunkSize(data, at);
          break;
        case 'chunk-data':
          at = this.#readBody(data, at, 'chunk-end');
          break;
        case 'chunk-end':
          at = this.#readChunkEnd(data, at);
          break;
        case 'trailers':
          at = this.#readTrailers(data, at);
          break;
        case 'close':
          this.#sink!.onBody(data.subarray(at));
          at = end;
          break;
        case 'done':
          return at;
      }
    }
    return at;
  }

  /** The connection ended: completes a body read to the close; anything else was cut. */
  finish(): void {
    if (this.#state === 'close') {
      this.#state = 'done';
      return;
    }
    if (this.#state !== 'done') throw new ResponseProtocolError(`connection closed in the middle of a response (${this.#state})`);
  }

  /** Hand over up to the #remaining bytes of a body or chunk; `next`: the state once all are read. */
  #readBody(data: Buffer, at: number, next: State): number {
    const n = Math.min(this.#remaining, data.length - at);
    this.#remaining -= n;
    // The state moves first: the sink may pause or halt, and the parser must already know the body ended.
    if (this.#remaining === 0) this.#state = next;
    this.#sink!.onBody(data.subarray(at, at + n));
    return at + n;
  }

  /** Accumulate split bytes (copied: `data` may be a reused read buffer). */
  #hold(data: Buffer, from: number, to: number, bound: number, what: string): void {
    const part = data.subarray(from, to);
    const prev = this.#pending;
    const size = (prev === null ? 0 : prev.length) + part.length;
    if (size > bound) throw new ResponseProtocolError(`${what} over ${bound} bytes`);
    this.#pending = prev === null ? Buffer.from(part) : Buffer.concat([prev, part], size);
  }

  #readHead(data: Buffer, at: number): number {
    let buf = data;
    let start = at;
    const prev = this.#pending;
    /** Where the Buffer's search for the head's end starts. */
    let from = at;
    if (prev === null) {
      // The head, usually whole in this read, found in one string of its first bytes by
      // V8's own string search (a Buffer's indexOf is a call into C++, as the toString is).
      const probe = Math.min(data.length, at + PROBE_BYTES);
      const text = data.toString('latin1', at, probe);
      const stop = text.indexOf('\r\n\r\n');
      if (stop >= 0) {
        this.#parseHead(data, at, at + stop + 2, text.length === stop + 2 ? text : text.slice(0, stop + 2));
        return at + stop + 4;
      }
      // Not in the probe: only an end that starts in its last 3 bytes or after is left to find.
      from = Math.max(at, probe - 3);
    } else {
      // Join only what can hold the end of the head (3 bytes back for a split CRLFCRLF).
      const take = Math.min(data.length - at, MAX_HEAD_BYTES + 4 - prev.length);
      buf = Buffer.concat([prev, data.subarray(at, at + take)]);
      start = 0;
      from = 0;
    }
    const stop = buf.indexOf(HEAD_END, from);
    if (stop < 0) {
      if (prev !== null) {
        this.#pending = null;
        this.#hold(buf, 0, buf.length, MAX_HEAD_BYTES, 'response head');
      } else {
        this.#hold(data, at, data.length, MAX_HEAD_BYTES, 'response head');
      }
      return data.length;
    }
    if (stop - start > MAX_HEAD_BYTES) throw new ResponseProtocolError(`response head over ${MAX_HEAD_BYTES} bytes`);
    const consumed = prev === null ? stop + 4 - at : stop + 4 - prev.length;
    this.#pending = null;
    // One string for the whole head, its pieces slices of it: no split, no regular expression per line.
    this.#parseHead(buf, start, stop + 2, buf.toString('latin1', start, stop + 2));
    return at + consumed;
  }

  /**
   * buf[start, end): the status line and the field lines, each ended by CRLF (the
   * head without its final empty line); `text` is the same bytes as a string. Read
   * by byte from the buffer (a typed array's element is cheaper to read than a
   * string's character); the string is for the slices: text[k] is buf[start + k].
   */
  #parseHead(buf: Buffer, start: number, end: number, text: string): void {
    const status = statusOf(buf, start, text);
    let at = buf.indexOf(CR, start);
    const reason = at - start > 13 ? text.slice(13, at - start) : '';
    const http10 = buf[start + 7] === 48; /* 0 */
    at += 2;
    let length: string | null = null;
    let te: string | null = null;
    let connection: string | null = null;
    let keepAlive: string | null = null;
    let hasDate = false;
    let hasHsts = false;
    // The lines the client gets as they came: runs of `text` between the hop-by-hop ones.
    let lines: string | null = '';
    let run = -1;
    let count = 1;
    while (at < end) {
      if (++count > MAX_HEADER_LINES) throw new ResponseProtocolError(`more than ${MAX_HEADER_LINES} header lines`);
      // name ":" OWS value OWS CRLF; the value's bytes are checked to its CR, so a bare CR or LF is
      // refused (and every line of the head ends in CRLF, so no loop passes `end`).
      const lineStart = at;
      let i = tokenEnd(buf, at);
      if (i === at || buf[i] !== COLON) throw malformedLine(text, at - start, i - start);
      const nameLen = i - at;
      i++;
      let c = buf[i]!;
      while (c === SP || c === HTAB) c = buf[++i]!;
      const valueStart = i;
      // A field value's bytes (FIELD_CHAR) compared, not looked up: no table read per byte.
      while ((c >= SP && c !== DEL) || c === HTAB) c = buf[++i]!;
      if (c !== CR || buf[i + 1] !== LF) throw new ResponseProtocolError(`invalid characters in the value of ${text.slice(lineStart - start, lineStart - start + nameLen)}`);
      at = i + 2;
      let valueEnd = i;
      while (valueEnd > valueStart && ((c = buf[valueEnd - 1]!) === SP || c === HTAB)) valueEnd--;
      // "name: value" exactly, as the list's form would be written.
      const plain = valueStart === lineStart + nameLen + 2 && buf[valueStart - 1] === SP && valueEnd === i;
      let sent = true;
      switch (fieldKind(buf, lineStart, nameLen)) {
        case LENGTH: {
          const value = text.slice(valueStart - start, valueEnd - start);
          length = length === null ? value : `${length},${value}`;
          break;
        }
        case TRANSFER_ENCODING: {
          const value = text.slice(valueStart - start, valueEnd - start);
          te = te === null ? value : `${te},${value}`;
          lines = null;
          break;
        }
        case CONNECTION: {
          const value = text.slice(valueStart - start, valueEnd - start);
          connection = connection === null ? value : `${connection},${value}`;
          sent = false;
          break;
        }
        case KEEP_ALIVE:
          keepAlive = text.slice(valueStart - start, valueEnd - start);
          sent = false;
          break;
        case HOP_BY_HOP:
          sent = false;
          break;
        case DATE:
          hasDate = true;
          break;
        case HSTS:
          hasHsts = true;
          break;
      }
      if (sent && !plain) lines = null;
      if (lines === null) continue;
      if (sent) {
        if (run < 0) run = lineStart;
      } else if (run >= 0) {
        lines += text.slice(run - start, lineStart - start);
        run = -1;
      }
    }
    if (lines !== null && run >= 0) lines += text.slice(run - start);
    // A Connection naming fields (other than close and keep-alive): those are hop-by-hop too, read one by one.
    if (lines !== null && connection !== null && connectionNamesFields(connection)) lines = null;
    if (status < 200) {
      // 100 Continue, 103 Early Hints: not forwarded; the final response follows. 101 was never asked for.
      if (status === 101) throw new ResponseProtocolError('101 Switching Protocols to a request that asked for no upgrade');
      return;
    }

    let reusable = true;
    if (connection !== null && !(connection.length === 10 && sameName(connection, 'keep-alive'))) {
      for (const token of connection.toLowerCase().split(',')) {
        const t = token.trim();
        if (t === 'close') reusable = false;
        else if (t === 'keep-alive' && http10) reusable = true;
      }
      if (http10 && !/(?:^|,)\s*keep-alive\s*(?:,|$)/i.test(connection)) reusable = false;
    } else if (connection === null && http10) {
      reusable = false;
    }
    if (keepAlive !== null) this.keepAliveHintMs = keepAliveHint(keepAlive);

    // RFC 9112 6.3: how the body ends.
    let framing: 'none' | 'length' | 'chunked' | 'close';
    if (this.#head || status === 204 || status === 304) {
      framing = 'none';
    } else if (te !== null) {
      const codings = te.toLowerCase().split(',');
      framing = codings[codings.length - 1]!.trim() === 'chunked' ? 'chunked' : 'close';
      // Both fields: the length is ignored, and this connection is not trusted with another request.
      if (length !== null) reusable = false;
    } else if (length !== null) {
      const n = contentLength(length);
      framing = n === 0 ? 'none' : 'length';
      this.#remaining = n;
    } else {
      framing = 'close';
    }
    this.#keepAlive = reusable && framing !== 'close';

    if (framing === 'length') this.#state = 'length';
    else if (framing === 'chunked') this.#state = 'chunk-size';
    else if (framing === 'close') this.#state = 'close';
    else this.#state = 'done';
    this.#sink!.onHead(status, reason, new ResponseFields(text, connection, te !== null, lines, length !== null, hasDate, hasHsts));
  }

  /** Read up to a CRLF-terminated line; returns [line, next index] or null (held for the next read). */
  #line(data: Buffer, at: number, bound: number, what: string): [string, number] | null {
    const lf = data.indexOf(LF, at);
    if (lf < 0) {
      this.#hold(data, at, data.length, bound, what);
      return null;
    }
    let line: Buffer = data.subarray(at, lf);
    const prev = this.#pending;
    if (prev !== null) {
      this.#pending = null;
      if (prev.length + line.length > bound) throw new ResponseProtocolError(`${what} over ${bound} bytes`);
      line = Buffer.concat([prev, line]);
    } else if (line.length > bound) {
      throw new ResponseProtocolError(`${what} over ${bound} bytes`);
    }
    if (line.length === 0 || line[line.length - 1] !== CR) throw new ResponseProtocolError(`${what} not ended by CRLF`);
    return [line.toString('latin1', 0, line.length - 1), lf + 1];
  }

  #readChunkSize(data: Buffer, at: number): number {
    const got = this.#line(data, at, MAX_CHUNK_LINE, 'chunk-size line');
    if (got === null) return data.length;
    const [line, next] = got;
    const m = CHUNK_SIZE.exec(line);
    if (m === null) throw new ResponseProtocolError(`malformed chunk-size line ${JSON.stringify(line.slice(0, 80))}`);
    const size = parseInt(m[1]!, 16);
    if (size === 0) {
      this.#state = 'trailers';
      this.#remaining = 0;
    } else {
      this.#state = 'chunk-data';
      this.#remaining = size;
    }
    return next;
  }

  #readChunkEnd(data: Buffer, at: number): number {
    // Exactly CRLF; the CR may have come at the end of the previous read.
    if (!this.#chunkCr) {
      if (data[at] !== CR) throw new ResponseProtocolError('chunk data not followed by CRLF');
      this.#chunkCr = true;
      return at + 1;
    }
    if (data[at] !== LF) throw new ResponseProtocolError('chunk data not followed by CRLF');
    this.#chunkCr = false;
    this.#state = 'chunk-size';
    return at + 1;
  }

  #readTrailers(data: Buffer, at: number): number {
    // Trailer fields are read and dropped (the proxy does not forward trailers), up to the empty line.
    for (;;) {
      const got = this.#line(data, at, MAX_TRAILER_BYTES, 'trailer line');
      if (got === null) return data.length;
      const [line, next] = got;
      at = next;
      if (line === '') {
        this.#state = 'done';
        return at;
      }
      this.#remaining += line.length;
      if (this.#remaining > MAX_TRAILER_BYTES) throw new ResponseProtocolError(`trailers over ${MAX_TRAILER_BYTES} bytes`);
      const colon = line.indexOf(':');
      if (colon <= 0 || !TOKEN.test(line.slice(0, colon)) || INVALID_VALUE.test(line.slice(colon + 1))) {
        throw new ResponseProtocolError(`malformed trailer line ${JSON.stringify(line.slice(0, 80))}`);
      }
      if (at >= data.length) return at;
    }
  }
}

/**
 * The status code of a status line (RFC 9112 4): "HTTP/1.0" or "HTTP/1.1", SP,
 * three digits (the first 1-9), then SP and a reason of field characters, or
 * the line's end.
 */
function statusOf(buf: Buffer, start: number, text: string): number {
  for (let i = 0; i < 7; i++) if (buf[start + i] !== HTTP1[i]) throw malformedStatus(text);
  const minor = buf[start + 7];
  const d0 = buf[start + 9]! - 48;
  const d1 = buf[start + 10]! - 48;
  const d2 = buf[start + 11]! - 48;
  if ((minor !== 48 && minor !== 49) || buf[start + 8] !== SP || !(d0 >= 1 && d0 <= 9) || !(d1 >= 0 && d1 <= 9) || !(d2 >= 0 && d2 <= 9)) throw malformedStatus(text);
  let i = start + 12;
  let c = buf[i];
  if (c === SP) {
    c = buf[++i];
    while (c !== CR) {
      if (FIELD_CHAR[c!] !== 1) throw malformedStatus(text);
      c = buf[++i];
    }
  }
  if (c !== CR || buf[i + 1] !== LF) throw malformedStatus(text);
  return d0 * 100 + d1 * 10 + d2;
}

function malformedStatus(text: string): ResponseProtocolError {
  const cr = text.indexOf('\r');
  return new ResponseProtocolError(`malformed status line ${JSON.stringify(text.slice(0, Math.min(cr < 0 ? 80 : cr, 80)))}`);
}

const OTHER = 0;
const LENGTH = 1;
const TRANSFER_ENCODING = 2;
const CONNECTION = 3;
const KEEP_ALIVE = 4;
const HOP_BY_HOP = 5;
const DATE = 6;
const HSTS = 7;

/** What the field named at buf[at, at + len) is to the framing and the client's side; decided by length, then compared without a copy. */
function fieldKind(buf: Buffer, at: number, len: number): number {
  switch (len) {
    case 2:
      return nameAt(buf, at, 'te') ? HOP_BY_HOP : OTHER;
    case 4:
      return nameAt(buf, at, 'date') ? DATE : OTHER;
    case 7:
      return nameAt(buf, at, 'upgrade') || nameAt(buf, at, 'trailer') ? HOP_BY_HOP : OTHER;
    case 10:
      if (nameAt(buf, at, 'connection')) return CONNECTION;
      return nameAt(buf, at, 'keep-alive') ? KEEP_ALIVE : OTHER;
    case 14:
      return nameAt(buf, at, 'content-length') ? LENGTH : OTHER;
    case 16:
      return nameAt(buf, at, 'proxy-connection') ? HOP_BY_HOP : OTHER;
    case 17:
      return nameAt(buf, at, 'transfer-encoding') ? TRANSFER_ENCODING : OTHER;
    case 25:
      return nameAt(buf, at, 'strict-transport-security') ? HSTS : OTHER;
    default:
      return OTHER;
  }
}

/** Field names as read → their lowercase form. An instance sends the same few names every time: each is lowercased once, and its lowercase string is the same object every time (a property key V8 has already interned). Bounded. */
const LOWER = new Map<string, string>();
const LOWER_MAX = 512;

function lowerName(name: string): string {
  let lower = LOWER.get(name);
  if (lower === undefined) {
    lower = name.toLowerCase();
    if (LOWER.size < LOWER_MAX) LOWER.set(name, lower);
  }
  return lower;
}

let lastKeepAlive = '';
let lastHintMs = 0;

/** The timeout a Keep-Alive field announces, in ms (0: none). An instance sends the same value every time: the last one is remembered. */
function keepAliveHint(value: string): number {
  if (value === lastKeepAlive) return lastHintMs;
  const t = /(?:^|[,;\s])timeout\s*=\s*(\d{1,6})/i.exec(value);
  lastKeepAlive = value;
  lastHintMs = t === null ? 0 : Number(t[1]) * 1000;
  return lastHintMs;
}

/** A Content-Length value (or the values of repeated fields, joined by commas): all the same digits, a safe integer. */
function contentLength(value: string): number {
  // One field of digits, the usual form: read without splitting.
  let n = 0;
  let i = 0;
  for (; i < value.length; i++) {
    const d = value.charCodeAt(i) - 48;
    if (d < 0 || d > 9) break;
    n = n * 10 + d;
  }
  if (i === value.length && i > 0) {
    if (!Number.isSafeInteger(n)) throw new ResponseProtocolError(`Content-Length ${value} too large`);
    return n;
  }
  const values = value.split(',');
  const first = values[0]!.trim();
  for (const v of values) {
    const s = v.trim();
    if (!DIGITS.test(s) || s !== first) throw new ResponseProtocolError(`invalid Content-Length ${JSON.stringify(value.slice(0, 80))}`);
  }
  const m = Number(first);
  if (!Number.isSafeInteger(m)) throw new ResponseProtocolError(`Content-Length ${first} too large`);
  return m;
}

/** A field line whose name is not a token followed by a colon. */
function malformedLine(text: string, from: number, stop: number): ResponseProtocolError {
  const cr = text.indexOf('\r', from);
  const line = text.slice(from, cr < 0 ? text.length : cr);
  if (text.charCodeAt(stop) === CR || line.indexOf(':') <= 0) return new ResponseProtocolError(`malformed header line ${JSON.stringify(line.slice(0, 80))}`);
  return new ResponseProtocolError(`invalid header name ${JSON.stringify(line.slice(0, line.indexOf(':')).slice(0, 80))}`);
}
