import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideRetry, isIdempotent, type AttemptFailure, type RetryDecision } from '../../src/proxy/retry.ts';

const base: AttemptFailure = {
  method: 'GET',
  hasBody: false,
  sent: true,
  reusedConnection: true,
  responseStarted: false,
  errorCode: 'ECONNRESET',
  resendUsed: false,
};

test('decideRetry: decision table', () => {
  const cases: { name: string; f: Partial<AttemptFailure>; want: RetryDecision }[] = [
    // Never sent: any method goes to another target.
    { name: 'GET refused', f: { sent: false, reusedConnection: false, errorCode: 'ECONNREFUSED' }, want: 'other' },
    { name: 'POST refused', f: { method: 'POST', hasBody: true, sent: false, errorCode: 'ECONNREFUSED' }, want: 'other' },
    { name: 'PATCH connect timeout', f: { method: 'PATCH', sent: false, errorCode: 'BATON_UPSTREAM_CONNECT_TIMEOUT' }, want: 'other' },
    { name: 'queued when pool closed', f: { method: 'POST', sent: false, errorCode: 'BATON_UPSTREAM_POOL_CLOSED' }, want: 'other' },
    { name: 'invalid request never retried', f: { sent: false, errorCode: 'BATON_UPSTREAM_INVALID_REQUEST' }, want: 'none' },
    // Reused connection lost before any response byte.
    { name: 'GET reset on reused conn', f: {}, want: 'again' },
    { name: 'GET other side closed', f: { errorCode: 'BATON_UPSTREAM_CLOSED' }, want: 'again' },
    { name: 'GET EPIPE', f: { errorCode: 'EPIPE' }, want: 'again' },
    { name: 'HEAD', f: { method: 'HEAD' }, want: 'again' },
    { name: 'OPTIONS', f: { method: 'OPTIONS' }, want: 'again' },
    { name: 'TRACE', f: { method: 'TRACE' }, want: 'again' },
    { name: 'PUT without body', f: { method: 'PUT' }, want: 'again' },
    { name: 'DELETE', f: { method: 'DELETE' }, want: 'again' },
    { name: 'only once', f: { resendUsed: true }, want: 'none' },
    // Fresh connection lost before any response byte (an instance that closes every
    // connection, killed mid-request): once more, on another instance.
    { name: 'GET reset on a fresh connection', f: { reusedConnection: false }, want: 'elsewhere' },
    { name: 'GET other side closed, fresh', f: { reusedConnection: false, errorCode: 'BATON_UPSTREAM_CLOSED' }, want: 'elsewhere' },
    { name: 'DELETE EPIPE, fresh', f: { method: 'DELETE', reusedConnection: false, errorCode: 'EPIPE' }, want: 'elsewhere' },
    { name: 'fresh, only once', f: { reusedConnection: false, resendUsed: true }, want: 'none' },
    { name: 'POST reset on a fresh connection', f: { method: 'POST', reusedConnection: false }, want: 'none' },
    { name: 'PATCH reset on a fresh connection', f: { method: 'PATCH', reusedConnection: false }, want: 'none' },
    { name: 'PUT with a body, fresh', f: { method: 'PUT', hasBody: true, reusedConnection: false }, want: 'none' },
    { name: 'fresh, response started', f: { reusedConnection: false, responseStarted: true }, want: 'none' },
    { name: 'fresh, headers timeout', f: { reusedConnection: false, errorCode: 'BATON_UPSTREAM_HEADERS_TIMEOUT' }, want: 'none' },
    { name: 'with a body', f: { method: 'PUT', hasBody: true }, want: 'none' },
    { name: 'POST', f: { method: 'POST' }, want: 'none' },
    { name: 'PATCH', f: { method: 'PATCH' }, want: 'none' },
    { name: 'response started', f: { responseStarted: true }, want: 'none' },
    { name: 'response started, never mind not sent', f: { sent: false, responseStarted: true }, want: 'none' },
    { name: 'headers timeout', f: { errorCode: 'BATON_UPSTREAM_HEADERS_TIMEOUT' }, want: 'none' },
    { name: 'unknown error', f: { errorCode: undefined }, want: 'none' },
    { name: 'aborted', f: { errorCode: 'BATON_CLIENT_GONE' }, want: 'none' },
  ];
  for (const k of cases) assert.equal(decideRetry({ ...base, ...k.f }), k.want, k.name);
});

test('isIdempotent', () => {
  for (const m of ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']) assert.equal(isIdempotent(m), true, m);
  for (const m of ['POST', 'PATCH', 'CONNECT', 'get']) assert.equal(isIdempotent(m), false, m);
});
