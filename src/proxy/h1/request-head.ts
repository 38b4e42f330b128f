// The request heads baton's own HTTP/1.1 path takes: a strict subset of what
// node:http's parser (llhttp, strict mode) accepts, read the same way. Pure.
//
// The lean path never decides what llhttp would decide differently. It takes a
// head only when every byte is of the plain form below; anything else (a
// Transfer-Encoding, two Content-Length fields, an upgrade, Expect, HTTP/1.0,
// obs-fold, a bare CR or LF, a byte outside printable ASCII, a second Host, a
// limit reached, an incomplete head) is handed with its bytes untouched to
// node:http, whose answer stays the one baton always gave. So the
// request-smuggling forms (two lengths, a Transfer-Encoding spelled oddly,
// whitespace before the colon) never reach this path's framing: a request
// here has no body or exactly one Content-Length of digits, and the next one
// starts right after that many bytes.

import { Buffer } from 'node:buffer';
import type { ClientConnection } from '../client.ts';
import { forwardingLines, forwardRequestHeaders } from '../headers.ts';
import type { RequestLimits } from '../limits.ts';
import type { UpstreamRequest } from '../upstream/request-head.ts';
import { connectionNamesFields, fieldList, nameAt, sameName, tokenEnd } from '../upstream/tokens.ts';

/** A head the lean path serves. */
export interface LeanHead {
  readonly method: string;
  /** Origin form, as sent. */
  readonly url: string;
  /** [name, value, ...] as sent (values without surrounding whitespace), like node:http's rawHeaders. Read from `text` when first asked for. */
  readonly rawHeaders: string[];
  /**
   * The field lines the instance gets as they came ("name: value\r\n" each: all
   * but Host, Content-Length and Connection), or null when the head has a field
   * that the forwarding rewrite must look at (src/proxy/headers.ts): another
   * hop-by-hop field, a Connection naming more than keep-alive or close,
   * X-Forwarded-*, Forwarded, or a line not of that exact form.
   */
  readonly fields: string | null;
  /** The Content-Length value as sent, or null. */
  readonly contentLength: string | null;
  readonly host: string;
  /** The Accept value (baton's pages answer in HTML or text), or undefined. */
  readonly accept: string | undefined;
  /** Connection: close was asked for. */
  readonly close: boolean;
  /** The body's length (its one Content-Length field), 0 without one. */
  readonly bodyLength: number;
  /** Offset just past the head's empty line: where the next request starts. */
  readonly end: number;
}

/** Not all of the head has arrived. */
export const INCOMPLETE = 0;
/** Not of the lean form: node:http reads it. */
export const HAND_OFF = 1;

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const COLON = 58;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
/** The bytes read into one string at once to find the head's end (most heads are shorter; longer ones are searched in the Buffer). */
const PROBE_BYTES = 4096;
const VERSION = Buffer.from(' HTTP/1.1\r\n', 'latin1');

/** The methods taken (others, CONNECT among them, go to node:http). */
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'].map((m) => ({ name: m, bytes: Buffer.from(`${m} `, 'latin1') }));

const DEL = 127;

/** Bytes of a request target here: visible ASCII. */
function targetByte(c: number): boolean {
  return c > 32 && c < 127;
}

function startsWith(buf: Buffer, at: number, bytes: Buffer): boolean {
  if (buf.length - at < bytes.length) return false;
  for (let i = 0; i < bytes.length; i++) if (buf[at + i] !== bytes[i]) return false;
  return true;
}

/** Fields the lean path never serves: a body framed by Transfer-Encoding, an upgrade or a 100 Continue. */
function refusedName(buf: Buffer, at: number, len: number): boolean {
  switch (len) {
    case 6:
      return nameAt(buf, at, 'expect');
    case 7:
      return nameAt(buf, at, 'upgrade');
    case 17:
      return nameAt(buf, at, 'transfer-encoding');
    default:
      return false;
  }
}

/** Digits only (what llhttp's strict mode takes), within a safe integer; -1 for anything else. */
function lengthOf(buf: Buffer, from: number, to: number): number {
  if (to === from || to - from > 15) return -1;
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = buf[i]! - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

const KEEP_ALIVE_TOKENS = { close: false, upgrade: false };

/** The tokens of a Connection value: close asked, or an upgrade (node:http's). */
function connectionTokens(value: string): { close: boolean; upgrade: boolean } {
  // What browsers send, without splitting.
  if (value.length === 10 && sameName(value, 'keep-alive')) return KEEP_ALIVE_TOKENS;
  let close = false;
  let upgrade = false;
  for (const part of value.split(',')) {
    const t = part.trim().toLowerCase();
    if (t === 'close') close = true;
    else if (t === 'upgrade') upgrade = true;
  }
  return { close, upgrade };
}

/** Fields the forwarding rewrite changes or removes (besides Host, Content-Length and Connection): a head with one is rewritten field by field. */
function rewrittenName(buf: Buffer, at: number, len: number): boolean {
  switch (len) {
    case 2:
      return nameAt(buf, at, 'te');
    case 7:
      return nameAt(buf, at, 'trailer');
    case 9:
      return nameAt(buf, at, 'forwarded');
    case 10:
      return nameAt(buf, at, 'keep-alive');
    case 15:
      return nameAt(buf, at, 'x-forwarded-for');
    case 16:
      return nameAt(buf, at, 'x-forwarded-host') || nameAt(buf, at, 'proxy-connection');
    case 17:
      return nameAt(buf, at, 'x-forwarded-proto');
    default:
      return false;
  }
}

/**
 * Read the head starting at `start` of `buf`. INCOMPLETE when its end has not
 * arrived (and the bytes so far are within the head's limit), HAND_OFF when
 * node:http must read it, else the head.
 */
export function parseLeanHead(buf: Buffer, start: number, limits: RequestLimits): LeanHead | typeof INCOMPLETE | typeof HAND_OFF {
  // One string of what was read (up to PROBE_BYTES; usually exactly one head) for the
  // head and its pieces, which are slices of it (latin1: a byte is a character, the
  // offsets are the same): its end is found by V8's own string search, without a
  // second call into C++ (a Buffer's indexOf) besides the toString. A Buffer's
  // toString is such a call, whose own cost, made for every name and value, was
  // more than the reading.
  const probe = Math.min(buf.length, start + PROBE_BYTES);
  let text = buf.toString('latin1', start, probe);
  let stop = text.indexOf('\r\n\r\n');
  if (stop >= 0) {
    stop += start;
  } else if (probe < buf.length) {
    stop = buf.indexOf(HEAD_END, probe - 3);
    if (stop >= 0) text = buf.toString('latin1', start, stop + 2);
  }
  if (stop < 0) return buf.length - start > limits.maxHeaderSize ? HAND_OFF : INCOMPLETE;
  const end = stop + 4;
  if (end - start > limits.maxHeaderSize) return HAND_OFF;
  // Through the last field line's CRLF.
  if (text.length > stop + 2 - start) text = text.slice(0, stop + 2 - start);

  // Request line: METHOD SP origin-form SP HTTP/1.1 CRLF.
  let method: string | null = null;
  let at = start;
  for (const m of METHODS) {
    if (startsWith(buf, start, m.bytes)) {
      method = m.name;
      at = start + m.bytes.length;
      break;
    }
  }
  if (method === null || buf[at] !== 47 /* / */) return HAND_OFF;
  const urlStart = at;
  while (at < stop && targetByte(buf[at]!)) at++;
  if (!startsWith(buf, at, VERSION)) return HAND_OFF;
  if (at - urlStart > limits.maxUrlLength) return HAND_OFF;
  const url = text.slice(urlStart - start, at - start);
  at += VERSION.length;

  // Field lines: token ":" OWS value OWS CRLF, up to the empty line. Only the
  // values read here are sliced; the lines the instance gets as they came are
  // gathered as runs of `text` (most heads: one or two slices).
  let count = 0;
  let host: string | null = null;
  let accept: string | undefined;
  let close = false;
  let bodyLength = -1;
  let contentLength: string | null = null;
  let fields: string | null = '';
  let run = -1; // where the current run of lines sent as they came starts, or -1
  while (at < end - 2) {
    const nameStart = at;
    at = tokenEnd(buf, at);
    const nameLen = at - nameStart;
    if (nameLen === 0 || buf[at] !== COLON) return HAND_OFF;
    if (refusedName(buf, nameStart, nameLen)) return HAND_OFF;
    at++;
    while (buf[at] === SP || buf[at] === HTAB) at++;
    const valueStart = at;
    // A value's bytes here: printable ASCII, SP and HTAB (obs-text goes to node:http), compared, not looked up.
    for (let c = buf[at]!; (c >= SP && c < DEL) || c === HTAB; c = buf[++at]!);
    if (buf[at] !== CR || buf[at + 1] !== LF) return HAND_OFF;
    let valueEnd = at;
    while (valueEnd > valueStart && (buf[valueEnd - 1] === SP || buf[valueEnd - 1] === HTAB)) valueEnd--;
    // "name: value" exactly: what forwardRequestHeaders would write for it.
    const plain = valueStart === nameStart + nameLen + 2 && buf[valueStart - 1] === SP && valueEnd === at;
    at += 2;
    if (++count > limits.maxHeaders) return HAND_OFF;
    let sent = true; // the line goes to the instance as it came
    if (nameLen === 4 && nameAt(buf, nameStart, 'host')) {
      if (host !== null) return HAND_OFF;
      host = text.slice(valueStart - start, valueEnd - start);
      sent = false;
    } else if (nameLen === 6 && nameAt(buf, nameStart, 'accept')) {
      const value = text.slice(valueStart - start, valueEnd - start);
      accept = accept === undefined ? value : `${accept}, ${value}`;
    } else if (nameLen === 10 && nameAt(buf, nameStart, 'connection')) {
      const value = text.slice(valueStart - start, valueEnd - start);
      const t = connectionTokens(value);
      if (t.upgrade) return HAND_OFF;
      if (t.close) close = true;
      if (connectionNamesFields(value)) fields = null;
      sent = false;
    } else if (nameLen === 14 && nameAt(buf, nameStart, 'content-length')) {
      // One field of digits; a second one, even with the same value, is llhttp's to refuse.
      if (bodyLength >= 0) return HAND_OFF;
      bodyLength = lengthOf(buf, valueStart, valueEnd);
      if (bodyLength < 0) return HAND_OFF;
      contentLength = text.slice(valueStart - start, valueEnd - start);
      sent = false;
    } else if (rewrittenName(buf, nameStart, nameLen)) {
      fields = null;
    }
    if (sent && !plain) fields = null;
    if (fields === null) continue;
    if (sent) {
      if (run < 0) run = nameStart;
    } else if (run >= 0) {
      fields += text.slice(run - start, nameStart - start);
      run = -1;
    }
  }
  // HTTP/1.1 requires Host; node:http answers its absence.
  if (host === null) return HAND_OFF;
  if (fields !== null && run >= 0) fields += text.slice(run - start);
  return new Head(method, url, text, fields, contentLength, host, accept, close, bodyLength < 0 ? 0 : bodyLength, end);
}

const asRead = (name: string): string => name;

/**
 * What the instance is sent for a lean head: the client's fields as they came
 * when no rewrite touches them (then only Host, Content-Length and this hop's
 * forwarding fields are added), else the list rewritten field by field. Both
 * give the same head (test/unit/h1-request-head.test.ts).
 */
export function instanceRequest(head: LeanHead, forwarding: Forwarding, body: NodeJS.ReadableStream | undefined): InstanceRequest {
  const fields = head.fields;
  if (fields === null) return { method: head.method, path: head.url, headers: forwardRequestHeaders(head.rawHeaders, forwarding.facts), fields: undefined, checked: true, body };
  const length = head.contentLength;
  return { method: head.method, path: head.url, headers: length === null ? ['host', head.host] : ['host', head.host, 'content-length', length], fields: fields + forwarding.lines(head.host), checked: true, body };
}

/**
 * This hop's forwarding lines for one client connection (forwardingLines):
 * made again only when the Host changes, which a connection's requests
 * almost never do. Their making was a tenth of a request's own JavaScript.
 */
export class Forwarding {
  readonly facts: ClientConnection;
  #host: string | null = null;
  #lines = '';

  constructor(facts: ClientConnection) {
    this.facts = facts;
  }

  lines(host: string): string {
    if (host !== this.#host) {
      this.#host = host;
      this.#lines = forwardingLines(host, this.facts);
    }
    return this.#lines;
  }
}

/** The request for the instance as the forwarder takes it: the body is the one of the head's Content-Length, when it has one. */
export type InstanceRequest = Pick<UpstreamRequest, 'method' | 'path' | 'headers' | 'checked' | 'fields'> & { body: NodeJS.ReadableStream | undefined };

/** A LeanHead; its rawHeaders list is made only for those who read it (the canary split, the access log, a head with fields to rewrite). */
class Head implements LeanHead {
  readonly method: string;
  readonly url: string;
  /** The request line and the field lines, each with its CRLF. */
  readonly text: string;
  readonly fields: string | null;
  readonly contentLength: string | null;
  readonly host: string;
  readonly accept: string | undefined;
  readonly close: boolean;
  readonly bodyLength: number;
  readonly end: number;
  #raw: string[] | null = null;

  constructor(method: string, url: string, text: string, fields: string | null, contentLength: string | null, host: string, accept: string | undefined, close: boolean, bodyLength: number, end: number) {
    this.method = method;
    this.url = url;
    this.text = text;
    this.fields = fields;
    this.contentLength = contentLength;
    this.host = host;
    this.accept = accept;
    this.close = close;
    this.bodyLength = bodyLength;
    this.end = end;
  }

  get rawHeaders(): string[] {
    return (this.#raw ??= fieldList(this.text, asRead));
  }
}
