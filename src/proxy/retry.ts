// Retry rules: may a failed upstream attempt be sent again, and where? Pure.
//
// The contract is "never send a non-idempotent request twice". So:
//  - an attempt that never reached a socket (connection refused, connect
//    timeout, pool closed while it was queued) was never sent: any method may
//    go to ANOTHER target;
//  - an idempotent request without a body that died on a REUSED keep-alive
//    connection before any response byte (the instance closed the idle
//    connection as we wrote, or was killed) may be sent once more, anywhere;
//  - everything else fails.

/** Methods whose repetition has the same effect as one call (RFC 9110 9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Errors that mean the connection died under the request, not that the request was bad. */
const CONNECTION_LOST = new Set([
  'ECONNRESET',
  'EPIPE',
  'UND_ERR_SOCKET', // undici SocketError: "other side closed", "closed"
]);

/** Errors raised while validating a request: sending it elsewhere cannot help. */
const REQUEST_INVALID = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED']);

export interface AttemptFailure {
  method: string;
  hasBody: boolean;
  /** The request was handed to a socket (undici called onRequestStart). */
  sent: boolean;
  /** That socket had carried at least one request before this one. */
  reusedConnection: boolean;
  /** At least one byte of a response arrived. */
  responseStarted: boolean;
  /** `code` of the error, when it has one. */
  errorCode: string | undefined;
  /** Whether this request already used its one retry after a lost reused connection. */
  reuseRetryUsed: boolean;
}

/** 'other': resend to a target not tried yet. 'again': resend once to any target. 'none': fail. */
export type RetryDecision = 'other' | 'again' | 'none';

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method);
}

export function decideRetry(f: AttemptFailure): RetryDecision {
  if (f.responseStarted) return 'none';
  if (f.errorCode !== undefined && REQUEST_INVALID.has(f.errorCode)) return 'none';
  if (!f.sent) return 'other';
  if (
    f.reusedConnection &&
    !f.hasBody &&
    !f.reuseRetryUsed &&
    IDEMPOTENT.has(f.method) &&
    f.errorCode !== undefined &&
    CONNECTION_LOST.has(f.errorCode)
  ) {
    return 'again';
  }
  return 'none';
}
