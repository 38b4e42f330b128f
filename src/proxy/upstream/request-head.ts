// The head of a request to an instance, checked and written out. Pure.

import { UpstreamError } from './errors.ts';
import { sameName } from './tokens.ts';

/** What the proxy sends to an instance. */
export interface UpstreamRequest {
  method: string;
  /** The request target as the client sent it (origin form). */
  path: string;
  /** Flat [name, value, ...] list, already rewritten (src/proxy/headers.ts); no framing fields but Content-Length. */
  headers: readonly string[];
  /** The body: a stream (Node's request objects) or an async iterable; null when there is none. */
  body: NodeJS.ReadableStream | AsyncIterable<Buffer> | null;
  /**
   * The method, target, names and values were read by baton's own strict parser
   * (src/proxy/h1/request-head.ts: tokens, visible ASCII, field characters) and the
   * fields added since are baton's own: requestHead does not check them again.
   */
  checked?: boolean;
  /**
   * Field lines sent as they are, before `headers` ("name: value\r\n" each; no
   * Host or framing field among them): the lean path's request, whose client
   * fields no rewrite touches, with this hop's forwarding fields after them.
   * `headers` then holds only Host and Content-Length.
   */
  fields?: string | undefined;
}

/** The head as bytes go out, and how the body is framed. */
export interface RequestHead {
  text: string;
  /** The body's declared length (Content-Length), or null: a body is sent chunked. */
  length: number | null;
}

/** Methods whose requests are expected to carry content (an empty one is announced as Content-Length: 0). */
const EXPECTS_PAYLOAD = new Set(['POST', 'PUT', 'PATCH']);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A field value (RFC 9110 5.5): no CR, LF, NUL or other controls but HTAB. */
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const DIGITS = /^[0-9]+$/;
/** A request target in origin or asterisk form, without whitespace or controls (Node's parser already checked what a client sent). */
const INVALID_TARGET = /[^\x21-\x7e\x80-\xff]/;

/**
 * The head for `req`. `defaultHost`: the Host sent when the client's request
 * had none (HTTP/1.0). Throws UpstreamError 'BATON_UPSTREAM_INVALID_REQUEST'
 * for what must not be sent: an invalid name, value, method or target, two
 * Host fields, two or invalid Content-Length fields.
 */
export function requestHead(req: UpstreamRequest, defaultHost: string): RequestHead {
  const { method, path, headers } = req;
  const check = req.checked !== true;
  if (check && !TOKEN.test(method)) throw invalid('invalid method');
  if (check && (path.length === 0 || INVALID_TARGET.test(path))) throw invalid('invalid request target');
  let host: string | null = null;
  let length: number | null = null;
  let fields = req.fields ?? '';
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    const value = headers[i + 1]!;
    if (check) {
      if (!TOKEN.test(name)) throw invalid('invalid header name');
      if (INVALID_VALUE.test(value)) throw invalid(`invalid ${name} header`);
    }
    if (name.length === 4 && sameName(name, 'host')) {
      if (host !== null) throw invalid('duplicate host header');
      host = value;
      continue;
    }
    if (name.length === 14 && sameName(name, 'content-length')) {
      if (length !== null) throw invalid('duplicate content-length header');
      if (!DIGITS.test(value)) throw invalid('invalid content-length header');
      length = Number(value);
      continue;
    }
    fields += `${name}: ${value}\r\n`;
  }
  // Host right after the request line, as RFC 9112 3.2 advises.
  // No Connection field: HTTP/1.1 connections persist unless one side says close
  // (RFC 9112 9.3), and an instance's server reads every field it is sent.
  let text = `${method} ${path} HTTP/1.1\r\nhost: ${host ?? defaultHost}\r\n${fields}`;
  if (req.body === null) {
    if (length !== null && length !== 0) throw invalid(`content-length ${length} without a body`);
    if (length !== null || EXPECTS_PAYLOAD.has(method)) text += 'content-length: 0\r\n';
    length = 0;
  } else if (length !== null) {
    text += `content-length: ${length}\r\n`;
  } else {
    text += 'transfer-encoding: chunked\r\n';
  }
  return { text: `${text}\r\n`, length };
}

function invalid(message: string): UpstreamError {
  return new UpstreamError('BATON_UPSTREAM_INVALID_REQUEST', message);
}
