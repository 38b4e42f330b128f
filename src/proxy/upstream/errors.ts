// Why an exchange with an instance failed, as codes the retry rules read (src/proxy/retry.ts).

export type UpstreamErrorCode =
  /** The connection closed, cleanly or not, before the response was complete. */
  | 'BATON_UPSTREAM_CLOSED'
  /** No connection within the connect timeout. */
  | 'BATON_UPSTREAM_CONNECT_TIMEOUT'
  /** No complete response head within the response timeout. */
  | 'BATON_UPSTREAM_HEADERS_TIMEOUT'
  /** The request cannot be sent as it is (a header value with a line break...): no instance would do better. */
  | 'BATON_UPSTREAM_INVALID_REQUEST'
  /** The instance's response is malformed (src/proxy/upstream/response-parser.ts). */
  | 'BATON_UPSTREAM_PROTOCOL'
  /** The pool was closed or destroyed before the request got a connection. */
  | 'BATON_UPSTREAM_POOL_CLOSED';

export class UpstreamError extends Error {
  readonly code: UpstreamErrorCode;
  constructor(code: UpstreamErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** The code of a request that cannot be sent as it is: the client's failure (400), never retried, not the instance's fault. */
export const UPSTREAM_INVALID_REQUEST: UpstreamErrorCode = 'BATON_UPSTREAM_INVALID_REQUEST';
