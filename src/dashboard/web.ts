// What every dashboard server shares (the daemon's, and the fleet's that
// `baton fleet dashboard` runs on the operator's machine): the security
// headers, the door a request came through and its cookie, the sign-in link's
// answer, static assets with their caching headers, server-sent events and
// small forms.

import type * as http from 'node:http';
import { isIP } from 'node:net';
import { BatonError } from '../core/errors.ts';
import type { Assets } from './assets.ts';
import type { Door, LoginRefusal } from './auth.ts';

export const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  // Not no-referrer: with it Chromium sends "Origin: null" on the page's own form posts, which the Origin check refuses.
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

export const REFUSED: Record<LoginRefusal, string> = {
  malformed: 'This is not a baton login link.',
  unknown: 'This login link is unknown or has expired.',
  expired: 'This login link has expired.',
  used: 'This login link was already used: each link signs in once.',
  door: 'This login link was made for the dashboard at another address (the loopback listener, or the TLS control listener): open it there.',
};

const MAX_FORM_BYTES = 8 * 1024;

/** How a request reached the dashboard, and what that means for its cookie and its checks. */
export interface Entry {
  door: Door;
  /** The scheme the browser used: the Origin of the page's own forms. */
  scheme: 'http' | 'https';
  cookieName: string;
  /** The cookie's attributes: Secure over TLS, so the browser never sends it in the clear. */
  cookieAttributes: string;
}

/**
 * The loopback listener: one cookie per port (two daemons on one host do not
 * sign each other out). The TLS door: a `__Host-` cookie, which browsers take
 * only with Secure, Path=/ and no Domain.
 */
export function entry(door: Door, port: number): Entry {
  return door === 'tls'
    ? { door, scheme: 'https', cookieName: `__Host-baton_dash_${port}`, cookieAttributes: 'HttpOnly; Secure; SameSite=Strict; Path=/' }
    : { door, scheme: 'http', cookieName: `baton_dash_${port}`, cookieAttributes: 'HttpOnly; SameSite=Strict; Path=/' };
}

export function send(res: http.ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
  const buf = Buffer.from(body);
  res.writeHead(status, { 'content-type': type, 'content-length': buf.length, 'cache-control': 'no-store', ...SECURITY_HEADERS, ...extra });
  res.end(buf);
}

/** A content-hashed asset: cached for good (immutable), gzipped for clients that take it. */
export function sendAsset(assets: Assets, req: http.IncomingMessage, res: http.ServerResponse, pathname: string): void {
  const a = assets.byUrl(pathname);
  if (!a) return send(res, 404, 'text/plain; charset=utf-8', 'no such asset\n');
  const headers = { 'content-type': a.type, 'cache-control': 'public, max-age=31536000, immutable', etag: a.etag, vary: 'accept-encoding', ...SECURITY_HEADERS };
  if (req.headers['if-none-match'] === a.etag) {
    res.writeHead(304, headers);
    return void res.end();
  }
  const gz = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
  const body = gz ? a.gzip : a.body;
  res.writeHead(200, { ...headers, 'content-length': body.length, ...(gz ? { 'content-encoding': 'gzip' } : {}) });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** The answer to a redeemed login link: the session cookie and a redirect to the first page. */
export function signedIn(res: http.ServerResponse, e: Entry, cookie: string): void {
  res.writeHead(303, { location: '/', 'set-cookie': `${e.cookieName}=${cookie}; ${e.cookieAttributes}`, 'cache-control': 'no-store', ...SECURITY_HEADERS });
  res.end();
}

export function clearedCookie(e: Entry): string {
  return `${e.cookieName}=; ${e.cookieAttributes}; Max-Age=0`;
}

export function openEventStream(res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', ...SECURITY_HEADERS });
  res.write('retry: 2000\n\n');
}

export function sse(res: http.ServerResponse, event: string, data: unknown): void {
  if (!res.destroyed) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

export function cookie(req: http.IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * On a loopback listener (plain HTTP), a Host that is not an IP address or
 * localhost is refused: a hostile site whose name resolves to 127.0.0.1 (DNS
 * rebinding) cannot read the pages. Over TLS the certificate binds the name.
 */
export function allowedHost(host: string): boolean {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:]+)(?::\d{1,5})?$/.exec(host);
  if (!m) return false;
  const name = m[1]!.replace(/^\[|\]$/g, '').toLowerCase();
  return name === 'localhost' || isIP(name) !== 0;
}

/** Whether `s` is a host[:port] that may stand in a URL (the Host a client used for the TLS listener). */
export function isHostPort(s: string): boolean {
  return /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(?::\d{1,5})?$/.test(s);
}

/** One segment of a request path, percent-decoded; malformed escapes are the request's fault (400), not the dashboard's (500). */
export function decodePathPart(part: string, pathname: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new BatonError('BAD_REQUEST', `the path ${JSON.stringify(pathname.slice(0, 200))} has a malformed %-escape`);
  }
}

export async function readForm(req: http.IncomingMessage): Promise<URLSearchParams> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_FORM_BYTES) throw new BatonError('BAD_REQUEST', `form over ${MAX_FORM_BYTES} bytes`);
    chunks.push(c);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}
