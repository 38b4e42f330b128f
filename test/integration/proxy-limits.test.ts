// The limits on a request head (431 for its size and for its number of fields,
// 414 for the URL), each answered with baton's page naming the limit, and never
// seen by the instance. The instance is an in-process server counting what it
// receives; every wait is bounded, no wall-clock assertion.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Proxy } from '../../src/proxy/index.ts';
import type { RequestLimits } from '../../src/proxy/index.ts';
import { silentLogger } from '../../src/core/log.ts';
import { rawExchange, request, service, startServer, target, withTimeout } from '../fixtures/proxy-harness.ts';
import type { TestContext } from 'node:test';

/** A proxy with these head limits in front of an instance that counts the requests it receives. */
async function limitedProxy(t: TestContext, limits: RequestLimits): Promise<{ proxy: Proxy; port: number; seen: () => number }> {
  let seen = 0;
  const up = await startServer(t, (_req, res) => {
    seen++;
    res.end('ok');
  });
  const proxy = new Proxy({ logger: silentLogger, clientIdleTimeoutMs: 5000, headersTimeoutMs: 5000, closeTimeoutMs: 3000, limits });
  const [addr] = await proxy.listen([{ host: '127.0.0.1', port: 0 }]);
  t.after(() => withTimeout(proxy.close(), 8000, 'proxy.close()'));
  proxy.apply({ services: [service('s', [target('u', up.port)], { isDefault: true })] });
  return { proxy, port: addr!.port, seen: () => seen };
}

const LIMITS: RequestLimits = { maxHeaderSize: 4096, maxHeaders: 20, maxUrlLength: 1024 };

function statusLine(raw: string): string {
  return raw.slice(0, raw.indexOf('\r\n'));
}

function headers(n: number): string {
  let out = '';
  for (let i = 0; i < n; i++) out += `x-h${i}: v\r\n`;
  return out;
}

test('a request head over max_header_size gets 431 naming the limit; the instance sees nothing', async (t) => {
  const { port, seen } = await limitedProxy(t, LIMITS);
  const raw = await rawExchange(port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(5000)}\r\n\r\n`);
  assert.equal(statusLine(raw), 'HTTP/1.1 431 Request Header Fields Too Large');
  assert.match(raw, /\r\nx-baton-error: headers_too_large\r\n/);
  assert.match(raw, /\r\nconnection: close\r\n/i);
  assert.match(raw, /header size limit/);
  // The same instance answers a request within the limits: it was reachable all along.
  assert.equal((await request(port)).status, 200);
  assert.equal(seen(), 1, 'only the request within the limits reached the instance');
});

test('more header fields than max_headers get 431; exactly max_headers pass', async (t) => {
  const { port, seen } = await limitedProxy(t, LIMITS);
  // Host and Connection are fields too: 2 + 18 = 20 pass, 1 + 20 = 21 do not.
  const ok = await rawExchange(port, `GET / HTTP/1.1\r\nHost: x\r\n${headers(18)}Connection: close\r\n\r\n`);
  assert.equal(statusLine(ok), 'HTTP/1.1 200 OK');
  const raw = await rawExchange(port, `GET / HTTP/1.1\r\nHost: x\r\n${headers(20)}\r\n`);
  assert.equal(statusLine(raw), 'HTTP/1.1 431 Request Header Fields Too Large');
  assert.match(raw, /\r\nx-baton-error: too_many_headers\r\n/);
  assert.match(raw, /header count limit/);
  assert.equal(seen(), 1, 'the request over the field count never reached the instance');
});

test('a URL over max_url_length gets 414 naming the limit; one at the limit passes', async (t) => {
  const { port, seen } = await limitedProxy(t, LIMITS);
  const atLimit = '/' + 'a'.repeat(LIMITS.maxUrlLength - 1);
  assert.equal((await request(port, { path: atLimit })).status, 200);
  const r = await request(port, { path: atLimit + 'b', headers: { accept: 'text/plain' } });
  assert.equal(r.status, 414);
  assert.equal(r.headers['x-baton-error'], 'url_too_long');
  assert.equal(r.headers.connection, 'close');
  assert.match(r.body, /^414 URI Too Long: .*URL length limit/);
  assert.equal(seen(), 1, 'the long URL never reached the instance');
});

test('a WebSocket upgrade over a head limit is refused the same way', async (t) => {
  const { port, seen } = await limitedProxy(t, LIMITS);
  const raw = await rawExchange(
    port,
    `GET /${'a'.repeat(2000)} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
  );
  assert.equal(statusLine(raw), 'HTTP/1.1 414 URI Too Long');
  assert.equal(seen(), 0);
});

test('headers that never finish get 408 with a body naming the header timeout', async (t) => {
  const up = await startServer(t, (_req, res) => res.end('ok'));
  const proxy = new Proxy({ logger: silentLogger, clientIdleTimeoutMs: 5000, headersTimeoutMs: 300, closeTimeoutMs: 3000 });
  const [addr] = await proxy.listen([{ host: '127.0.0.1', port: 0 }]);
  t.after(() => withTimeout(proxy.close(), 8000, 'proxy.close()'));
  proxy.apply({ services: [service('s', [target('u', up.port)], { isDefault: true })] });
  const raw = await rawExchange(addr!.port, 'GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ');
  assert.equal(statusLine(raw), 'HTTP/1.1 408 Request Timeout');
  assert.match(raw, /\r\nx-baton-error: headers_timeout\r\n/);
  assert.match(raw, /header timeout/);
});

test('setRequestLimits: field count and URL length at once, the head size for new connections', async (t) => {
  const { proxy, port, seen } = await limitedProxy(t, LIMITS);
  assert.equal(statusLine(await rawExchange(port, `GET / HTTP/1.1\r\nHost: x\r\n${headers(30)}\r\n`)), 'HTTP/1.1 431 Request Header Fields Too Large');
  proxy.setRequestLimits({ maxHeaderSize: 64 * 1024, maxHeaders: 200, maxUrlLength: 8192 });
  const many = await rawExchange(port, `GET /${'u'.repeat(2000)} HTTP/1.1\r\nHost: x\r\n${headers(150)}X-Big: ${'a'.repeat(10_000)}\r\nConnection: close\r\n\r\n`);
  assert.equal(statusLine(many), 'HTTP/1.1 200 OK');
  assert.equal(seen(), 1);
});
