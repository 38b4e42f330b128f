// Responses baton writes itself (404, 502, 503, 504, 400, and the limits' 408, 413, 414, 431): small HTML or text pages with x-baton-error.

import { Buffer } from 'node:buffer';
import type { ServerResponse } from 'node:http';

/** Stable machine-readable reason, sent as the `x-baton-error` header. */
export type ProxyErrorCode =
  | 'no_route' // 404: no service for this Host and no default service
  | 'no_instance' // 503: the service has no instance in service
  | 'upstream_unreachable' // 502: no instance accepted the connection
  | 'upstream_failed' // 502: the instance broke the connection or sent an invalid response
  | 'upstream_timeout' // 504: no response head within responseTimeoutMs
  | 'bad_request' // 400: the request cannot be forwarded as sent
  | 'paused' // 503: the service is paused and the request could not be held (queue full) or waited too long
  | 'beta_link_invalid' // 400: a beta link that is invalid, expired or already used
  | 'headers_timeout' // 408: the request headers did not arrive within proxy.headers_timeout
  | 'headers_too_large' // 431: request line and headers over proxy.max_header_size
  | 'too_many_headers' // 431: more header fields than proxy.max_headers
  | 'url_too_long' // 414: a request target longer than proxy.max_url_length
  | 'body_too_large' // 413: a body over the service's limits.max_body_size
  | 'too_many_connections' // 503: the client's address holds proxy.max_connections_per_client connections already
  | 'at_capacity'; // 503: the service is at limits.max_inflight and its queue is full, or the request waited limits.queue_timeout

interface Page {
  status: number;
  title: string;
  text: string;
}

const PAGES: Record<ProxyErrorCode, Page> = {
  no_route: { status: 404, title: 'Not Found', text: 'No site is served at this address.' },
  no_instance: { status: 503, title: 'Service Unavailable', text: 'The site has no running instance right now. Try again shortly.' },
  upstream_unreachable: { status: 502, title: 'Bad Gateway', text: 'The site could not be reached.' },
  upstream_failed: { status: 502, title: 'Bad Gateway', text: 'The site failed to answer this request.' },
  upstream_timeout: { status: 504, title: 'Gateway Timeout', text: 'The site did not answer in time (response timeout).' },
  bad_request: { status: 400, title: 'Bad Request', text: 'This request cannot be forwarded.' },
  paused: { status: 503, title: 'Service Unavailable', text: 'The site is busy with an update. Try again in a moment.' },
  beta_link_invalid: { status: 400, title: 'Bad Request', text: 'This beta link is invalid, has expired, or was already used.' },
  headers_timeout: { status: 408, title: 'Request Timeout', text: 'The request headers did not arrive in time (header timeout).' },
  headers_too_large: { status: 431, title: 'Request Header Fields Too Large', text: 'The request headers are larger than this site accepts (header size limit).' },
  too_many_headers: { status: 431, title: 'Request Header Fields Too Large', text: 'The request has more header fields than this site accepts (header count limit).' },
  url_too_long: { status: 414, title: 'URI Too Long', text: 'The request URL is longer than this site accepts (URL length limit).' },
  body_too_large: { status: 413, title: 'Content Too Large', text: 'The request body is larger than this site accepts (body size limit).' },
  too_many_connections: { status: 503, title: 'Service Unavailable', text: 'Too many connections from your address (per-client connection limit). Try again in a moment.' },
  at_capacity: { status: 503, title: 'Service Unavailable', text: 'The site is serving as many requests as it can (in-flight request limit). Try again in a moment.' },
};

interface Rendered {
  status: number;
  html: Buffer;
  plain: Buffer;
}

function render(code: ProxyErrorCode): Rendered {
  const p = PAGES[code];
  const html =
    `<!doctype html>\n<html><head><meta charset="utf-8"><title>${p.status} ${p.title}</title></head>` +
    `<body><h1>${p.status} ${p.title}</h1><p>${p.text}</p><hr><p><small>baton (${code})</small></p></body></html>\n`;
  const plain = `${p.status} ${p.title}: ${p.text} (${code})\n`;
  return { status: p.status, html: Buffer.from(html), plain: Buffer.from(plain) };
}

const RENDERED = Object.fromEntries(
  (Object.keys(PAGES) as ProxyErrorCode[]).map((c) => [c, render(c)]),
) as Record<ProxyErrorCode, Rendered>;

/** Every code baton answers with, and its status (docs/errors.md lists them). */
export function proxyErrorCodes(): { code: ProxyErrorCode; status: number }[] {
  return (Object.keys(PAGES) as ProxyErrorCode[]).map((code) => ({ code, status: PAGES[code].status }));
}

export function errorStatus(code: ProxyErrorCode): number {
  return PAGES[code].status;
}

/** q-value of a media range in an Accept header, -1 when absent. */
function quality(accept: string, type: string): number {
  let best = -1;
  for (const part of accept.split(',')) {
    const [range, ...params] = part.trim().toLowerCase().split(';');
    if (range !== type) continue;
    let q = 1;
    for (const p of params) {
      const [k, v] = p.trim().split('=');
      if (k === 'q' && v !== undefined) q = Number(v) || 0;
    }
    best = Math.max(best, q);
  }
  return best;
}

/** True when the client asks for text/plain over text/html (curl's "*\/*" gets HTML). */
export function prefersPlainText(accept: string | undefined): boolean {
  if (accept === undefined || accept === '') return false;
  const plain = quality(accept, 'text/plain');
  if (plain <= 0) return false;
  return plain > quality(accept, 'text/html');
}

const kAnswer = Symbol('baton.answer');
/** What baton answered itself on a response (for the access log): its x-baton-error code and body bytes. */
export interface OwnAnswer {
  error: string | null;
  bytes: number;
}
type Answered = ServerResponse & { [kAnswer]?: OwnAnswer };

/** baton's own answer on `res`, if it gave one (its head is written straight from an object: getHeader cannot see it). */
export function ownAnswer(res: ServerResponse): OwnAnswer | undefined {
  return (res as Answered)[kAnswer];
}

function markAnswer(res: ServerResponse, error: string | null, bytes: number): void {
  (res as Answered)[kAnswer] = { error, bytes };
}

/** Answer with baton's own page. `closeConnection` when the request body may be left half-read. */
export function sendErrorPage(res: ServerResponse, code: ProxyErrorCode, accept: string | undefined, closeConnection: boolean): void {
  const r = RENDERED[code];
  const plain = prefersPlainText(accept);
  const body = plain ? r.plain : r.html;
  const headers: Record<string, string | number> = {
    'content-type': plain ? 'text/plain; charset=utf-8' : 'text/html; charset=utf-8',
    'content-length': body.length,
    'cache-control': 'no-store',
    'x-baton-error': code,
  };
  if (r.status === 503) headers['retry-after'] = '1';
  if (closeConnection) {
    headers['connection'] = 'close';
    res.shouldKeepAlive = false;
  }
  res.writeHead(r.status, headers);
  const head = res.req.method === 'HEAD';
  markAnswer(res, code, head ? 0 : body.length);
  res.end(head ? undefined : body);
}

/**
 * baton's page as a complete HTTP/1.1 response with the headers sendErrorPage
 * writes (baton's own HTTP/1.1 path, src/proxy/h1/); `lines`: the
 * connection's own header lines (Date, Connection), each ending in CRLF.
 */
export function errorResponse(code: ProxyErrorCode, accept: string | undefined, headRequest: boolean, lines: string): { raw: Buffer; status: number; bodyBytes: number } {
  const r = RENDERED[code];
  const plain = prefersPlainText(accept);
  const body = plain ? r.plain : r.html;
  const head =
    `HTTP/1.1 ${r.status} ${PAGES[code].title}\r\ncontent-type: ${plain ? 'text/plain' : 'text/html'}; charset=utf-8\r\n` +
    `content-length: ${body.length}\r\ncache-control: no-store\r\nx-baton-error: ${code}\r\n${r.status === 503 ? 'retry-after: 1\r\n' : ''}${lines}\r\n`;
  if (headRequest) return { raw: Buffer.from(head, 'latin1'), status: r.status, bodyBytes: 0 };
  return { raw: Buffer.concat([Buffer.from(head, 'latin1'), body]), status: r.status, bodyBytes: body.length };
}

/** A complete HTTP/1.1 error response for a raw socket (a refused WebSocket upgrade). */
export function rawErrorResponse(code: ProxyErrorCode): Buffer {
  const r = RENDERED[code];
  const p = PAGES[code];
  const head =
    `HTTP/1.1 ${r.status} ${p.title}\r\n` +
    `content-type: text/plain; charset=utf-8\r\ncontent-length: ${r.plain.length}\r\n` +
    `x-baton-error: ${code}\r\n${r.status === 503 ? 'retry-after: 1\r\n' : ''}connection: close\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), r.plain]);
}

/** A small text/plain answer of baton's own (health endpoint). */
export function sendText(res: ServerResponse, status: number, text: string, extra: Record<string, string> | null = null): void {
  const body = Buffer.from(text);
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': body.length,
    'cache-control': 'no-store',
    ...extra,
  });
  const head = res.req.method === 'HEAD';
  markAnswer(res, null, head ? 0 : body.length);
  res.end(head ? undefined : body);
}

/** The maintenance page: 503, Retry-After, never cached. */
export function sendMaintenancePage(res: ServerResponse, html: Buffer, retryAfter: string): void {
  res.writeHead(503, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': html.length,
    'cache-control': 'no-store',
    'retry-after': retryAfter,
    'x-baton-error': 'maintenance',
  });
  const head = res.req.method === 'HEAD';
  markAnswer(res, 'maintenance', head ? 0 : html.length);
  res.end(head ? undefined : html);
}

/** The maintenance page for a raw socket (a WebSocket upgrade). */
export function rawMaintenanceResponse(html: Buffer, retryAfter: string): Buffer {
  const head =
    `HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: ${html.length}\r\n` +
    `cache-control: no-store\r\nretry-after: ${retryAfter}\r\nx-baton-error: maintenance\r\nconnection: close\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), html]);
}
