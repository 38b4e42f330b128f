// A request's header fields as node:http's `req.headers` gives them, from the
// raw [name, value, ...] list: built only where a part shared with node:http's
// path reads that object (the canary split), so the two paths decide alike. Pure.

import type { IncomingHttpHeaders } from 'node:http';

/** Fields of which node:http keeps the first and drops repeats (its matchKnownFields). */
const FIRST_WINS = new Set([
  'content-type',
  'content-length',
  'user-agent',
  'referer',
  'host',
  'authorization',
  'proxy-authorization',
  'if-modified-since',
  'if-unmodified-since',
  'from',
  'location',
  'max-forwards',
  'retry-after',
  'etag',
  'last-modified',
  'server',
  'age',
  'expires',
]);

/** Lowercase names; repeats joined with ", " (Cookie: "; "), Set-Cookie a list, the fields above first only. */
export function nodeHeaders(raw: readonly string[]): IncomingHttpHeaders {
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    const prev = out[name];
    if (name === 'set-cookie') {
      if (prev === undefined) out[name] = [value];
      else (prev as string[]).push(value);
    } else if (prev === undefined) {
      out[name] = value;
    } else if (name === 'cookie') {
      out[name] = `${prev as string}; ${value}`;
    } else if (!FIRST_WINS.has(name)) {
      out[name] = `${prev as string}, ${value}`;
    }
  }
  return out as IncomingHttpHeaders;
}
