// Header rewriting between client and instance: hop-by-hop removal and X-Forwarded-*.

import type { OutgoingHttpHeaders } from 'node:http';

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

export interface ForwardedFacts {
  /** Address of the client socket. */
  clientIp: string;
  /** Scheme the client used to reach baton. */
  proto: string;
}

/**
 * Request headers for the instance, as a flat [name, value, ...] list (the
 * form undici takes), from Node's `rawHeaders`. Removes hop-by-hop headers and
 * the ones named in Connection; removes Expect (Node has already answered
 * "100-continue" to the client); appends the client to X-Forwarded-For and
 * sets X-Forwarded-Proto and X-Forwarded-Host (replacing what a client sent:
 * baton is the edge, so a client-sent value would be a spoof). Host is kept as sent.
 *
 * With `keepUpgrade` the Upgrade header is kept and Connection becomes
 * "upgrade" (a WebSocket handshake needs both).
 */
export function forwardRequestHeaders(raw: readonly string[], facts: ForwardedFacts, keepUpgrade = false): string[] {
  let nominated: string[] | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 10 && name.toLowerCase() === 'connection') {
      const extra = connectionNominated(raw[i + 1]);
      if (extra !== null) nominated = nominated === null ? extra : nominated.concat(extra);
    }
  }
  const out: string[] = [];
  let xff: string | null = null;
  let host: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) {
      if (keepUpgrade && lower === 'upgrade') out.push(name, value);
      continue;
    }
    if (nominated !== null && nominated.includes(lower)) continue;
    switch (lower) {
      case 'host':
        if (host === null) host = value;
        break;
      case 'x-forwarded-for':
        xff = xff === null ? value : `${xff}, ${value}`;
        continue;
      case 'x-forwarded-proto':
      case 'x-forwarded-host':
      case 'expect':
        continue;
    }
    out.push(name, value);
  }
  if (keepUpgrade) out.push('connection', 'upgrade');
  out.push('x-forwarded-for', xff === null ? facts.clientIp : `${xff}, ${facts.clientIp}`);
  out.push('x-forwarded-proto', facts.proto);
  if (host !== null) out.push('x-forwarded-host', host);
  return out;
}

/**
 * Response headers for the client from undici's parsed (lowercase-keyed)
 * headers, without hop-by-hop headers: Node adds its own Connection,
 * Keep-Alive and framing for the client connection.
 */
export function forwardResponseHeaders(headers: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const nominated = connectionNominated(headers['connection']);
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    if (HOP_BY_HOP.has(name)) continue;
    if (nominated !== null && nominated.includes(name)) continue;
    out[name] = headers[name];
  }
  return out;
}
