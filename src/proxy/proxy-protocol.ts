// The PROXY protocol (HAProxy's spec, v1 text and v2 binary): a header a TCP
// balancer sends before the client's bytes, naming the client's address. The
// parser is pure; acceptProxyHeader() reads one header off a fresh connection.

import { Buffer } from 'node:buffer';
import net from 'node:net';

/** What a header says about the connection. */
export interface ProxyHeader {
  /** The original client's address, or null when the header names none (v1 UNKNOWN, v2 LOCAL, a non-IP family). */
  source: string | null;
  /** v2 only: the client reached the balancer over TLS (PP2_TYPE_SSL with PP2_CLIENT_SSL). */
  tls: boolean;
}

export type ParseResult =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'invalid'; readonly reason: string }
  | { readonly kind: 'header'; readonly header: ProxyHeader; /** Bytes of the header, to drop. */ readonly length: number };

const INCOMPLETE: ParseResult = { kind: 'incomplete' };
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** The longest v1 line the spec allows, CRLF included. */
const V1_MAX = 107;
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Bound on a v2 header's address + TLV block (the field allows 64 KiB; balancers send a few hundred bytes). */
export const V2_MAX_BODY = 4096;
const PP2_TYPE_SSL = 0x20;
const PP2_CLIENT_SSL = 0x01;
const PORT = /^(0|[1-9]\d{0,4})$/;

function invalid(reason: string): ParseResult {
  return { kind: 'invalid', reason };
}

/** Parse the header at the start of `buf` (which may hold more bytes after it). */
export function parseProxyHeader(buf: Buffer): ParseResult {
  if (buf.length === 0) return INCOMPLETE;
  if (buf[0] === 0x50 /* P */) return parseV1(buf);
  if (buf[0] === 0x0d) return parseV2(buf);
  return invalid('no PROXY protocol header');
}

function parseV1(buf: Buffer): ParseResult {
  const prefix = Math.min(buf.length, V1_PREFIX.length);
  if (buf.compare(V1_PREFIX, 0, prefix, 0, prefix) !== 0) return invalid('no PROXY protocol header');
  const end = buf.indexOf('\r\n', 0, 'latin1');
  if (end < 0 || end + 2 > V1_MAX) return buf.length >= V1_MAX ? invalid('v1 header longer than 107 bytes') : INCOMPLETE;
  const parts = buf.toString('latin1', V1_PREFIX.length, end).split(' ');
  const length = end + 2;
  const family = parts[0];
  if (family === 'UNKNOWN') return { kind: 'header', header: { source: null, tls: false }, length };
  if (family !== 'TCP4' && family !== 'TCP6') return invalid(`v1 protocol "${family ?? ''}" is not TCP4, TCP6 or UNKNOWN`);
  if (parts.length !== 5) return invalid('v1 header does not have source, destination and both ports');
  const [, src, dst, sport, dport] = parts as [string, string, string, string, string];
  const want = family === 'TCP4' ? 4 : 6;
  if (net.isIP(src) !== want || net.isIP(dst) !== want) return invalid(`v1 ${family} addresses are not IPv${want}`);
  if (!PORT.test(sport) || !PORT.test(dport) || Number(sport) > 65535 || Number(dport) > 65535) return invalid('v1 ports are not 0-65535');
  return { kind: 'header', header: { source: src, tls: false }, length };
}

function parseV2(buf: Buffer): ParseResult {
  const sig = Math.min(buf.length, V2_SIGNATURE.length);
  if (buf.compare(V2_SIGNATURE, 0, sig, 0, sig) !== 0) return invalid('no PROXY protocol header');
  if (buf.length < 16) return INCOMPLETE;
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return invalid(`v2 version ${verCmd >> 4} is not 2`);
  const command = verCmd & 0x0f;
  if (command > 1) return invalid(`v2 command ${command} is not LOCAL or PROXY`);
  const famProto = buf[13]!;
  const bodyLength = buf.readUInt16BE(14);
  if (bodyLength > V2_MAX_BODY) return invalid(`v2 header of ${bodyLength} bytes is longer than ${V2_MAX_BODY}`);
  if (buf.length < 16 + bodyLength) return INCOMPLETE;
  const body = buf.subarray(16, 16 + bodyLength);
  const length = 16 + bodyLength;
  let source: string | null = null;
  let addrLength = 0;
  const family = famProto >> 4;
  const transport = famProto & 0x0f;
  if (family === 1 || family === 2) {
    addrLength = family === 1 ? 12 : 36;
    if (body.length < addrLength) return invalid('v2 address block shorter than its family needs');
    // Only a proxied stream (TCP) carries an HTTP client; UDP/UNSPEC name none.
    if (command === 1 && transport === 1) source = family === 1 ? formatIPv4(body, 0) : formatIPv6(body.subarray(0, 16));
  } else if (family === 3) {
    addrLength = 216;
    if (body.length < addrLength) return invalid('v2 address block shorter than its family needs');
  } else if (family !== 0) {
    return invalid(`v2 address family ${family} is unknown`);
  }
  const tls = readTls(body, addrLength);
  if (tls === null) return invalid('v2 TLV list is malformed');
  return { kind: 'header', header: { source, tls }, length };
}

/** Whether the TLVs after the addresses say the client used TLS; null when they are malformed. */
function readTls(body: Buffer, from: number): boolean | null {
  let i = from;
  let tls = false;
  while (i < body.length) {
    if (i + 3 > body.length) return null;
    const type = body[i]!;
    const len = body.readUInt16BE(i + 1);
    if (i + 3 + len > body.length) return null;
    if (type === PP2_TYPE_SSL && len >= 1 && (body[i + 3]! & PP2_CLIENT_SSL) !== 0) tls = true;
    i += 3 + len;
  }
  return tls;
}

function formatIPv4(b: Buffer, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** RFC 5952 text: lowercase hex, the longest run of two or more zero groups as "::", IPv4-mapped as ::ffff:a.b.c.d. */
export function formatIPv6(b: Buffer): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i));
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return `::ffff:${formatIPv4(b, 12)}`;
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * Read a PROXY header off a fresh connection, then call `onHeader` with the
 * header and the bytes that came after it in the same reads (the caller hands
 * the socket on, then replays them). A connection whose first
 * bytes are not a valid header, or that sends none within `timeoutMs`, is closed
 * without a word (`onRefused` says why, for the log): there is no protocol to
 * answer in, and the bytes may not even be HTTP.
 */
export function acceptProxyHeader(socket: net.Socket, timeoutMs: number, onHeader: (header: ProxyHeader, rest: Buffer) => void, onRefused: (reason: string) => void): void {
  let buf: Buffer | null = null;
  const finish = (): void => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('error', onError);
    socket.off('end', onEnd);
  };
  const refuse = (reason: string): void => {
    finish();
    socket.on('error', () => undefined);
    // FIN, then release the socket once it is written; unread bytes may turn it into a reset, which is as clean.
    socket.end(() => socket.destroy());
    onRefused(reason);
  };
  const onData = (chunk: Buffer): void => {
    buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
    const r = parseProxyHeader(buf);
    if (r.kind === 'incomplete') return;
    if (r.kind === 'invalid') {
      refuse(r.reason);
      return;
    }
    finish();
    // Not unshift(): node:http reads a TCP socket's handle directly (bypassing the
    // stream's buffer), so the bytes are replayed as a 'data' event instead.
    onHeader(r.header, buf.subarray(r.length));
  };
  const onError = (): void => {
    finish();
    socket.destroy();
  };
  const onEnd = (): void => refuse('connection closed before a complete PROXY header');
  const timer = setTimeout(() => refuse(`no PROXY header within ${timeoutMs} ms`), timeoutMs);
  socket.on('data', onData);
  socket.on('error', onError);
  socket.once('end', onEnd);
}
