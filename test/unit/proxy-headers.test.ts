import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connectionNominated, forwardRequestHeaders, forwardResponseHeaders } from '../../src/proxy/headers.ts';

import type { ClientConnection } from '../../src/proxy/client.ts';

const facts: ClientConnection = { address: '10.0.0.9', proto: 'http', trusted: false };
const fromTrusted: ClientConnection = { address: '10.0.0.9', proto: 'http', trusted: true };

/** Flat [name, value] list → [lowercase name, value][] for comparison. */
function pairs(flat: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!.toLowerCase(), flat[i + 1]!]);
  return out;
}

test('request: hop-by-hop headers and Connection-nominated ones are removed', () => {
  const raw = [
    'Host', 'example.com:8080',
    'Connection', 'keep-alive, X-Secret, Foo',
    'Keep-Alive', 'timeout=5',
    'Proxy-Connection', 'keep-alive',
    'TE', 'trailers',
    'Trailer', 'Expires',
    'Transfer-Encoding', 'chunked',
    'Upgrade', 'h2c',
    'X-Secret', 'drop me',
    'foo', 'drop me too',
    'Expect', '100-continue',
    'Accept', 'text/html',
    'Set-Thing', 'a',
    'Set-Thing', 'b',
  ];
  assert.deepEqual(pairs(forwardRequestHeaders(raw, facts)), [
    ['host', 'example.com:8080'],
    ['accept', 'text/html'],
    ['set-thing', 'a'],
    ['set-thing', 'b'],
    ['x-forwarded-for', '10.0.0.9'],
    ['x-forwarded-proto', 'http'],
    ['x-forwarded-host', 'example.com:8080'],
    ['forwarded', 'for=10.0.0.9;host="example.com:8080";proto=http'],
  ]);
});

test('request: without a Connection nomination, every special name is recognised in any case, and look-alikes are kept', () => {
  const raw = [
    'HOST', 'a.test',
    'Connection', 'keep-alive',
    'KEEP-ALIVE', 'timeout=5',
    'proxy-CONNECTION', 'keep-alive',
    'tE', 'trailers',
    'TRAILER', 'Expires',
    'Transfer-ENCODING', 'chunked',
    'UPGRADE', 'h2c',
    'EXPECT', '100-continue',
    'X-FORWARDED-FOR', '1.1.1.1',
    'FORWARDED', 'for=1.1.1.1',
    'X-Forwarded-PROTO', 'https',
    'x-FORWARDED-host', 'evil.test',
    // Same lengths and first letters as the names above, but other names.
    'Tx', '1',
    'Trailed', '2',
    'Hose', '3',
    'Expert', '4',
    'Keep-Alivo', '5',
    'Forwarder', '6',
    'X-Forwarded-Fox', '7',
    'Proxy-Connectio2', '8',
    'Transfer-Encodinx', '9',
    'Accept-Encoding', 'gzip',
    'User-Agent', 'ua',
  ];
  assert.deepEqual(pairs(forwardRequestHeaders(raw, facts)), [
    ['host', 'a.test'],
    ['tx', '1'],
    ['trailed', '2'],
    ['hose', '3'],
    ['expert', '4'],
    ['keep-alivo', '5'],
    ['forwarder', '6'],
    ['x-forwarded-fox', '7'],
    ['proxy-connectio2', '8'],
    ['transfer-encodinx', '9'],
    ['accept-encoding', 'gzip'],
    ['user-agent', 'ua'],
    ['x-forwarded-for', '10.0.0.9'],
    ['x-forwarded-proto', 'http'],
    ['x-forwarded-host', 'a.test'],
    ['forwarded', 'for=10.0.0.9;host="a.test";proto=http'],
  ]);
});

const spoofable = [
  'host', 'a.test',
  'X-Forwarded-For', '1.1.1.1',
  'x-forwarded-for', '2.2.2.2, 3.3.3.3',
  'X-Forwarded-Proto', 'https',
  'X-Forwarded-Host', 'evil.test',
  'Forwarded', 'for=1.1.1.1;proto=https',
];

test('request: from an untrusted peer, X-Forwarded-* and Forwarded are replaced by what baton saw', () => {
  assert.deepEqual(pairs(forwardRequestHeaders(spoofable, facts)), [
    ['host', 'a.test'],
    ['x-forwarded-for', '10.0.0.9'],
    ['x-forwarded-proto', 'http'],
    ['x-forwarded-host', 'a.test'],
    ['forwarded', 'for=10.0.0.9;host="a.test";proto=http'],
  ]);
});

test('request: from a trusted proxy, X-Forwarded-For and Forwarded are appended to, Proto and Host kept', () => {
  assert.deepEqual(pairs(forwardRequestHeaders(spoofable, fromTrusted)), [
    ['host', 'a.test'],
    ['x-forwarded-for', '1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9'],
    ['x-forwarded-proto', 'https'],
    ['x-forwarded-host', 'evil.test'],
    ['forwarded', 'for=1.1.1.1;proto=https, for=10.0.0.9;host="a.test";proto=http'],
  ]);
  // A trusted proxy that sent none: baton's own values.
  assert.deepEqual(pairs(forwardRequestHeaders(['Host', 'a.test'], fromTrusted)), [
    ['host', 'a.test'],
    ['x-forwarded-for', '10.0.0.9'],
    ['x-forwarded-proto', 'http'],
    ['x-forwarded-host', 'a.test'],
    ['forwarded', 'for=10.0.0.9;host="a.test";proto=http'],
  ]);
});

test('request: Forwarded quotes IPv6 nodes and escapes the host', () => {
  const v6: ClientConnection = { address: '2001:db8::7', proto: 'https', trusted: false };
  const out = pairs(forwardRequestHeaders(['Host', 'a"b.test'], v6));
  assert.deepEqual(out.at(-1), ['forwarded', 'for="[2001:db8::7]";host="a\\"b.test";proto=https']);
});

test('request: no Host, no X-Forwarded-Host', () => {
  const names = pairs(forwardRequestHeaders(['Accept', '*/*'], facts)).map(([n]) => n);
  assert.deepEqual(names, ['accept', 'x-forwarded-for', 'x-forwarded-proto', 'forwarded']);
});

test('request: a WebSocket handshake keeps Upgrade and gets Connection: upgrade', () => {
  const raw = [
    'Host', 'ws.test',
    'Connection', 'Upgrade',
    'Upgrade', 'websocket',
    'Sec-WebSocket-Key', 'abc',
    'Sec-WebSocket-Version', '13',
    'Keep-Alive', 'timeout=1',
  ];
  assert.deepEqual(pairs(forwardRequestHeaders(raw, facts, true)), [
    ['host', 'ws.test'],
    ['upgrade', 'websocket'],
    ['sec-websocket-key', 'abc'],
    ['sec-websocket-version', '13'],
    ['connection', 'upgrade'],
    ['x-forwarded-for', '10.0.0.9'],
    ['x-forwarded-proto', 'http'],
    ['x-forwarded-host', 'ws.test'],
    ['forwarded', 'for=10.0.0.9;host="ws.test";proto=http'],
  ]);
});

test('response: hop-by-hop headers and nominated ones are removed, the rest kept', () => {
  const out = forwardResponseHeaders({
    'connection': 'keep-alive, x-hop',
    'keep-alive': 'timeout=5',
    'transfer-encoding': 'chunked',
    'trailer': 'x-checksum',
    'upgrade': 'h2c',
    'proxy-connection': 'close',
    'te': 'trailers',
    'x-hop': '1',
    'content-type': 'text/plain',
    'set-cookie': ['a=1', 'b=2'],
    'content-length': '12',
  });
  // The body was read chunked (Transfer-Encoding wins, RFC 9112 6.3): the length is not passed on.
  assert.deepEqual(out, { 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'] });
  assert.deepEqual(forwardResponseHeaders({ 'content-type': 'text/plain', 'content-length': '12' }), { 'content-type': 'text/plain', 'content-length': '12' });
});

test('connectionNominated', () => {
  assert.equal(connectionNominated(undefined), null);
  assert.equal(connectionNominated('keep-alive'), null);
  assert.equal(connectionNominated('Close'), null);
  assert.equal(connectionNominated('Upgrade, keep-alive'), null);
  assert.deepEqual(connectionNominated('close, X-A ,x-b,'), ['x-a', 'x-b']);
  assert.deepEqual(connectionNominated(['x-a', 'keep-alive, X-C']), ['x-a', 'x-c']);
});
