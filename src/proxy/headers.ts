// Header rewriting between client and instance: hop-by-hop removal and X-Forwarded-*.

import { sameName } from './upstream/tokens.ts';
import type { OutgoingHttpHeaders } from 'node:http';
import type { ClientConnection } from './client.ts';

/** Headers that describe one connection, not the message (RFC 9110 7.6.1), plus Proxy-Connection. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

export function isHopByHop(lowerName: string): boolean {
  return HOP_BY_HOP.has(lowerName);
}

/**
 * Extra header names nominated by a Connection header value ("close, X-Foo"),
 * lowercased; null when it names nothing beyond close/keep-alive/upgrade, the
 * common case, so callers skip the extra lookups.
 */
export function connectionNominated(value: string | readonly string[] | undefined): string[] | null {
  if (value === undefined) return null;
  // The usual values, without splitting.
  if (typeof value === 'string' && value.length <= 10) {
    const v = value.toLowerCase();
    if (v === 'keep-alive' || v === 'close' || v === 'upgrade') return null;
  }
  const joined = typeof value === 'string' ? value : value.join(',');
  let out: string[] | null = null;
  for (const part of joined.split(',')) {
    const token = part.trim().toLowerCase();
    if (token === '' || token === 'close' || token === 'keep-alive' || token === 'upgrade') continue;
    (out ??= []).push(token);
  }
  return out;
}

/**
 * The lowercase name, as one constant string, when `name` is one the request
 * rewrite looks at (hop-by-hop, Host, Expect, X-Forwarded-*, Forwarded); null
 * when it is not. Decided by length and first letter, then compared without
 * lowercasing: a browser's request head is mostly other names (Accept,
 * User-Agent, Accept-Encoding...), and lowercasing a capitalised name
 * allocates a string.
 */
function specialName(name: string): string | null {
  const c = name.charCodeAt(0) | 0x20;
  switch (name.length) {
    case 2:
      return c === 116 /* t */ && sameName(name, 'te') ? 'te' : null;
    case 4:
      return c === 104 /* h */ && sameName(name, 'host') ? 'host' : null;
    case 6:
      return c === 101 /* e */ && sameName(name, 'expect') ? 'expect' : null;
    case 7:
      if (c === 116 /* t */) return sameName(name, 'trailer') ? 'trailer' : null;
      return c === 117 /* u */ && sameName(name, 'upgrade') ? 'upgrade' : null;
    case 9:
      return c === 102 /* f */ && sameName(name, 'forwarded') ? 'forwarded' : null;
    case 10:
      if (c === 99 /* c */) return sameName(name, 'connection') ? 'connection' : null;
      return c === 107 /* k */ && sameName(name, 'keep-alive') ? 'keep-alive' : null;
    case 15:
      return c === 120 /* x */ && sameName(name, 'x-forwarded-for') ? 'x-forwarded-for' : null;
    case 16:
      if (c === 112 /* p */) return sameName(name, 'proxy-connection') ? 'proxy-connection' : null;
      return c === 120 /* x */ && sameName(name, 'x-forwarded-host') ? 'x-forwarded-host' : null;
    case 17:
      if (c === 116 /* t */) return sameName(name, 'transfer-encoding') ? 'transfer-encoding' : null;
      return c === 120 /* x */ && sameName(name, 'x-forwarded-proto') ? 'x-forwarded-proto' : null;
    default:
      return null;
  }
}

const CONNECTION = 'connection';

/** `name` is "connection" in any case (compared without allocating a lowercase copy). */
function isConnection(name: string): boolean {
  return name.length === 10 && sameName(name, CONNECTION);
}

/** A quoted-string (RFC 9110 5.6.4); the escaping pass only when needed (it never is for a valid Host). */
function quoted(v: string): string {
  if (v.indexOf('"') < 0 && v.indexOf('\\') < 0) return `"${v}"`;
  return `"${v.replace(/[\\"]/g, '\\$&')}"`;
}

/** This hop's Forwarded element. */
function forwardedElement(facts: ClientConnection, host: string | null): string {
  const node = facts.address.indexOf(':') < 0 ? facts.address : `"[${facts.address}]"`;
  return host === null ? `for=${node};proto=${facts.proto}` : `for=${node};host=${quoted(host)};proto=${facts.proto}`;
}

/**
 * Request headers for the instance, as a flat [name, value, ...] list (the
 * form the upstream client takes), from Node's `rawHeaders`. Removes hop-by-hop headers and
 * the ones named in Connection (Host excepted); removes Expect (Node has already answered
 * "100-continue" to the client). Host is kept as sent.
 *
 * X-Forwarded-For/-Proto/-Host and Forwarded: from a trusted proxy they are
 * kept, the client (the proxy, for it) appended to X-Forwarded-For and this
 * hop's element to Forwarded, and X-Forwarded-Proto/-Host filled in only when
 * absent. From anyone else they are replaced by what baton saw itself: a
 * client-sent value would be a spoof.
 *
 * With `keepUpgrade` the Upgrade header is kept and Connection becomes
 * "upgrade" (a WebSocket handshake needs both).
 */
export function forwardRequestHeaders(raw: readonly string[], facts: ClientConnection, keepUpgrade = false): string[] {
  let nominated: string[] | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    if (isConnection(raw[i]!)) {
      const extra = connectionNominated(raw[i + 1]);
      if (extra !== null) nominated = nominated === null ? extra : nominated.concat(extra);
    }
  }
  const trusted = facts.trusted;
  const out: string[] = [];
  let xff: string | null = null;
  let xfp: string | null = null;
  let xfh: string | null = null;
  let fwd: string | null = null;
  let host: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    // Any name may be nominated by Connection (rare): then every name is compared.
    const lower = nominated === null ? specialName(name) : name.toLowerCase();
    if (lower === null) {
      out.push(name, value);
      continue;
    }
    if (HOP_BY_HOP.has(lower)) {
      if (keepUpgrade && lower === 'upgrade') out.push(name, value);
      continue;
    }
    // Host is end to end and is what the request was routed by: a Connection
    // header naming it must not leave the instance with another host (the pool's default).
    if (nominated !== null && lower !== 'host' && nominated.includes(lower)) continue;
    switch (lower) {
      case 'host':
        if (host === null) host = value;
        break;
      case 'x-forwarded-for':
        if (trusted) xff = xff === null ? value : `${xff}, ${value}`;
        continue;
      case 'forwarded':
        if (trusted) fwd = fwd === null ? value : `${fwd}, ${value}`;
        continue;
      case 'x-forwarded-proto':
        if (trusted && xfp === null) xfp = value;
        continue;
      case 'x-forwarded-host':
        if (trusted && xfh === null) xfh = value;
        continue;
      case 'expect':
        continue;
    }
    out.push(name, value);
  }
  if (keepUpgrade) out.push('connection', 'upgrade');
  out.push('x-forwarded-for', xff === null ? facts.address : `${xff}, ${facts.address}`);
  out.push('x-forwarded-proto', xfp ?? facts.proto);
  if (xfh !== null) out.push('x-forwarded-host', xfh);
  else if (host !== null) out.push('x-forwarded-host', host);
  const element = forwardedElement(facts, host);
  out.push('forwarded', fwd === null ? element : `${fwd}, ${element}`);
  return out;
}

/**
 * This hop's forwarding fields as field lines, for a request that sent none of
 * the fields forwardRequestHeaders rewrites (hop-by-hop beyond Connection:
 * keep-alive/close, X-Forwarded-*, Forwarded, Expect): what it would add for
 * such a request, in the same order. The lean path sends the client's other
 * lines as they came and these after them (UpstreamRequest.fields): the same
 * head, made with a few strings instead of a list.
 */
export function forwardingLines(host: string, facts: ClientConnection): string {
  return `x-forwarded-for: ${facts.address}\r\nx-forwarded-proto: ${facts.proto}\r\nx-forwarded-host: ${host}\r\nforwarded: ${forwardedElement(facts, host)}\r\n`;
}

/**
 * Response headers for the client from the upstream parser's (lowercase-keyed)
 * headers, without hop-by-hop headers: Node adds its own Connection,
 * Keep-Alive and framing for the client connection.
 *
 * A copy, not deletes on the parser's object: deleting properties turns it into a
 * dictionary, and Node's writeHead then iterates that for more than the copy
 * costs (measured: +640 bytes allocated per request, bench/proxy-cost.ts).
 */
export function forwardResponseHeaders(headers: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const nominated = connectionNominated(headers['connection']);
  // With Transfer-Encoding the body was read chunked and its Content-Length is not its length (RFC 9112 6.3):
  // passed on, it would frame the client's response wrongly.
  const chunked = headers['transfer-encoding'] !== undefined;
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    if (HOP_BY_HOP.has(name)) continue;
    if (nominated !== null && nominated.includes(name)) continue;
    if (chunked && name === 'content-length') continue;
    out[name] = headers[name];
  }
  return out;
}
