// Retry rules: may a failed upstream attempt be sent again, and where? Pure.
//
// The contract is "never send a non-idempotent request twice". So:
//  - an attempt that never reached a socket (connection refused, connect
//    timeout, pool closed while it was queued) was never sent: any method may
//    go to ANOTHER target;
//  - an idempotent request without a body whose connection died before any
//    response byte may be sent once more, whether the connection was fresh or
//    reused (HAProxy's `retry-on empty-response`, Envoy's `reset`). Apps that
//    answer `Connection: close` (gunicorn's sync workers) use a fresh
//    connection for every request, so a rule limited to reused connections
//    would never fire for them:
//      - reused connection: most likely the instance closed an idle
//        keep-alive connection as we wrote; it is alive, so the resend
//        prefers another instance and may fall back to the same one;
//      - fresh connection: the instance accepted and then dropped it (killed,
//        crashing, its backlog reset): the resend goes to another instance only;
//  - everything else fails (a response that started, a timeout waiting for
//    the response head: the instance may be acting on the request).

import { UPSTREAM_INVALID_REQUEST } from './upstream/errors.ts';

/** Methods whose repetition has the same effect as one call (RFC 9110 9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Errors that mean the connection died under the request, not that the request was bad. */
const CONNECTION_LOST = new Set([
  'ECONNRESET',
  'EPIPE',
  'BATON_UPSTREAM_CLOSED', // closed by the instance before a complete response (src/proxy/upstream/)
]);

export interface AttemptFailure {
  method: string;
  hasBody: boolean;
  /** The request was handed to a connection (the pool called onRequestStart). */
  sent: boolean;
  /** That socket had carried at least one request before this one. */
  reusedConnection: boolean;
  /** At least one byte of a response arrived. */
  responseStarted: boolean;
  /** `code` of the error, when it has one. */
  errorCode: string | undefined;
  /** Whether this request was already sent again once after a lost connection. */
  resendUsed: boolean;
}

/**
 * 'other': never sent; send to a target not tried yet.
 * 'again': sent on a reused connection that died; send once more, to another target if there is one, else the same.
 * 'elsewhere': sent on a fresh connection that died; send once more, to another target only.
 * 'none': fail.
 */
export type RetryDecision = 'other' | 'again' | 'elsewhere' | 'none';

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method);
}

export function decideRetry(f: AttemptFailure): RetryDecision {
  if (f.responseStarted) return 'none';
  // A request that cannot be sent as it is: sending it elsewhere cannot help.
  if (f.errorCode === UPSTREAM_INVALID_REQUEST) return 'none';
  if (!f.sent) return 'other';
  if (!f.hasBody && !f.resendUsed && IDEMPOTENT.has(f.method) && f.errorCode !== undefined && CONNECTION_LOST.has(f.errorCode)) {
    return f.reusedConnection ? 'again' : 'elsewhere';
  }
  return 'none';
}
