// HTTP/2 streams through the HTTP/1.1 hot path: Node's compat request/response
// objects, adapted where HTTP/2 differs so dispatch.ts and forwarder.ts need
// not know. The instances behind baton speak HTTP/1.1.

import { Http2ServerRequest, Http2ServerResponse, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Exchange } from './forwarder.ts';
import type { TargetState } from './target.ts';

/**
 * An HTTP/2 request as the HTTP/1.1 code reads it: `:authority` becomes
 * `Host` (RFC 9113 8.3.1: it wins over a Host field), pseudo-headers are not in
 * `rawHeaders`, split cookie fields are one (RFC 9113 8.2.3), and a body sent
 * without content-length is announced as chunked, which is how the upstream client sends it.
 */
export class H2Request extends Http2ServerRequest {
  constructor(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, options: ConstructorParameters<typeof Readable>[0], rawHeaders: string[]) {
    super(stream, headers, options ?? {}, rawHeaders);
    const authority = headers[':authority'];
    if (typeof authority === 'string' && authority !== '') headers.host = authority;
    if (!stream.endAfterHeaders && headers['content-length'] === undefined) headers['transfer-encoding'] = 'chunked';
    const out: string[] = [];
    if (typeof headers.host === 'string') out.push('host', headers.host);
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]!;
      if (name.charCodeAt(0) === 58 /* ':' */ || name === 'host' || name === 'cookie') continue;
      out.push(name, rawHeaders[i + 1]!);
    }
    if (typeof headers.cookie === 'string') out.push('cookie', headers.cookie);
    // Node defines rawHeaders as a getter of the parent; the forwarder reads this list instead.
    Object.defineProperty(this, 'rawHeaders', { value: out, enumerable: true });
  }
}

/** Fields HTTP/2 forbids (RFC 9113 8.2.2); Node throws on them, so they are dropped here, whoever sets them. */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings']);

function connectionSpecific(lower: string, value: unknown): boolean {
  return CONNECTION_SPECIFIC.has(lower) || (lower === 'te' && String(value).toLowerCase() !== 'trailers');
}

function withoutConnectionSpecific(headers: OutgoingHttpHeaders | undefined): OutgoingHttpHeaders | undefined {
  if (headers === undefined) return undefined;
  let out: OutgoingHttpHeaders | null = null;
  for (const name in headers) {
    if (!connectionSpecific(name.toLowerCase(), headers[name])) continue;
    out ??= { ...headers };
    delete out[name];
  }
  return out ?? headers;
}

/**
 * An HTTP/2 response with the fields of baton's HTTP/1.1 response (`exchange`,
 * `shouldKeepAlive`, which HTTP/2 has no use for); status messages are
 * dropped (HTTP/2 has none) and connection-specific fields never reach the stream.
 */
export class H2Response extends Http2ServerResponse {
  exchange: Exchange | null = null;
  shouldKeepAlive = true;
  /** For the access log, as BatonResponse's. */
  target: TargetState | null = null;
  retries = 0;
  relayedBytes = 0;

  override writeHead(statusCode: number, a?: string | OutgoingHttpHeaders | readonly string[], b?: OutgoingHttpHeaders | readonly string[]): this {
    const headers = (typeof a === 'string' || a === undefined ? b : a) as OutgoingHttpHeaders | undefined;
    return super.writeHead(statusCode, withoutConnectionSpecific(headers));
  }

  override setHeader(name: string, value: number | string | readonly string[]): void {
    if (connectionSpecific(name.toLowerCase(), value)) return;
    super.setHeader(name, value);
  }
}
