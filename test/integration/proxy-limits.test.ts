// The limits on a request head (431 for its size and for its number of fields,
// 414 for the URL), each answered with baton's page naming the limit, and never
// seen by the instance. The instance is an in-process server counting what it
// receives; every wait is bounded, no wall-clock assertion.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Proxy } from '../../src/proxy/index.ts';
import type { RequestLimits } from '../../src/proxy/index.ts';
import { silentLogger } from '../../src/core/log.ts';
import { rawExchange, request, service, startServer, target, waitUntil, withTimeout } from '../fixtures/proxy-harness.ts';
import type { TestContext } from 'node:test';
import type { ServerResponse } from 'node:http';

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

// ---- the body, per service ----

interface BodyInstance {
  port: number;
  /** Requests whose head reached the instance. */
  seen: () => number;
  /** Per request that reached it: body bytes received, and whether the body ended (false: the connection closed first). */
  bodies: { bytes: number; complete: boolean | null }[];
}

async function bodyInstance(t: TestContext): Promise<BodyInstance> {
  const bodies: { bytes: number; complete: boolean | null }[] = [];
  const up = await startServer(t, (req, res) => {
    const b: { bytes: number; complete: boolean | null } = { bytes: 0, complete: null };
    bodies.push(b);
    req.on('data', (c: Buffer) => (b.bytes += c.length));
    req.on('end', () => {
      b.complete = true;
      res.end(`got ${b.bytes}`);
    });
    req.on('close', () => {
      if (b.complete === null) b.complete = false;
    });
  });
  return { port: up.port, seen: () => bodies.length, bodies };
}

/** A proxy routing Host "small.test" to a service with a body limit of `max`, and any other Host to one without. */
async function bodyProxy(t: TestContext, max: number): Promise<{ proxy: Proxy; port: number; small: BodyInstance; big: BodyInstance }> {
  const small = await bodyInstance(t);
  const big = await bodyInstance(t);
  const proxy = new Proxy({ logger: silentLogger, clientIdleTimeoutMs: 5000, headersTimeoutMs: 5000, closeTimeoutMs: 3000 });
  const [addr] = await proxy.listen([{ host: '127.0.0.1', port: 0 }]);
  t.after(() => withTimeout(proxy.close(), 8000, 'proxy.close()'));
  proxy.apply({
    services: [
      service('small', [target('s', small.port)], { hosts: ['small.test'], limits: { maxBodyBytes: max, maxInflight: null, maxQueued: 0, queueTimeoutMs: 1000 } }),
      service('big', [target('b', big.port)], { isDefault: true }),
    ],
  });
  return { proxy, port: addr!.port, small, big };
}

test('a Content-Length over the service\'s max_body_size: 413 before a byte is read, the instance sees nothing, the client reads the whole answer', async (t) => {
  const { proxy, port, small, big } = await bodyProxy(t, 1000);
  // 4 MiB announced and sent: far more than the socket buffers hold, so the refusal comes while the client still sends.
  const body = Buffer.alloc(4 * 1024 * 1024, 120);
  const r = await request(port, { method: 'POST', path: '/upload', headers: { host: 'small.test', accept: 'text/plain' }, body });
  assert.equal(r.status, 413);
  assert.equal(r.headers['x-baton-error'], 'body_too_large');
  assert.equal(r.headers.connection, 'close');
  assert.match(r.body, /^413 Content Too Large: .*body size limit/);
  assert.equal(small.seen(), 0, 'the instance saw nothing of it');
  // At the limit it passes; the other service has no limit at all.
  const ok = await request(port, { method: 'POST', headers: { host: 'small.test' }, body: Buffer.alloc(1000, 97) });
  assert.equal(ok.body, 'got 1000');
  const other = await request(port, { method: 'POST', body });
  assert.equal(other.body, `got ${body.length}`);
  assert.equal(big.seen(), 1);
  // The client's answer, not baton's failure.
  const c = proxy.counters('small');
  assert.equal(c.requests, 2);
  assert.equal(c.failed, 0);
  assert.equal(proxy.releaseMetrics('small').find((m) => m.release === '-')?.status['4xx'], 1);
});

test('Expect: 100-continue with a body over the limit gets 413 and no 100, so the body is never sent; within it, 100 then the answer', async (t) => {
  const { port, small } = await bodyProxy(t, 1000);
  const refused = await rawExchange(port, 'POST /upload HTTP/1.1\r\nHost: small.test\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n');
  assert.match(statusLine(refused), /^HTTP\/1\.1 413 /);
  assert.doesNotMatch(refused, /100 Continue/);
  assert.equal(small.seen(), 0);
  // Within the limit: the 100 comes first, then (once the body is sent) the instance's answer.
  const got = await withTimeout(
    new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      let text = '';
      let sent = false;
      s.on('error', reject);
      s.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        if (text.startsWith('HTTP/1.1 100 Continue\r\n\r\n') && !sent) {
          sent = true;
          s.write('x'.repeat(10));
        }
      });
      s.on('close', () => resolve(text));
      s.write('POST /upload HTTP/1.1\r\nHost: small.test\r\nContent-Length: 10\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n');
    }),
    10_000,
    'the 100-continue exchange',
  );
  assert.match(got, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
  assert.ok(got.endsWith('got 10'));
});

test('a chunked body that passes the limit mid-stream: the instance gets at most the limit and an aborted request, the client a 413 and a clean close', async (t) => {
  const { proxy, port, small } = await bodyProxy(t, 1000);
  const chunk = (n: number): string => `${n.toString(16)}\r\n${'c'.repeat(n)}\r\n`;
  const s = net.connect(port, '127.0.0.1');
  t.after(() => s.destroy());
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString('latin1')));
  const closed = new Promise<void>((resolve) => s.on('close', () => resolve()));
  s.on('error', () => undefined);
  await new Promise<void>((resolve) => s.once('connect', () => resolve()));
  s.write('POST /upload HTTP/1.1\r\nHost: small.test\r\nTransfer-Encoding: chunked\r\n\r\n' + chunk(600));
  // The first 600 bytes reach the instance before the rest is sent: the refusal comes mid-stream.
  await waitUntil(() => small.bodies[0]?.bytes === 600, 5000, 'the first chunk to reach the instance');
  s.write(chunk(600) + chunk(600) + '0\r\n\r\n');
  await withTimeout(closed, 10_000, 'the proxy to close the connection after its 413');
  assert.match(statusLine(got), /^HTTP\/1\.1 413 /);
  assert.match(got, /\r\nconnection: close\r\n/i);
  assert.match(got, /body size limit/);
  await waitUntil(() => small.bodies[0]?.complete === false, 5000, 'the instance to see its request aborted');
  assert.equal(small.bodies.length, 1);
  assert.ok(small.bodies[0]!.bytes <= 1000, `the instance got ${small.bodies[0]!.bytes} bytes, more than the limit`);
  const c = proxy.counters('small');
  assert.equal(c.requests, 1);
  assert.equal(c.failed, 0, 'a body over the limit is the client\'s doing');
});

test('a chunked body within the limit streams through whole', async (t) => {
  const { port, small } = await bodyProxy(t, 1000);
  const raw = await rawExchange(port, 'POST /upload HTTP/1.1\r\nHost: small.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1f4\r\n' + 'a'.repeat(500) + '\r\n1f4\r\n' + 'b'.repeat(500) + '\r\n0\r\n\r\n');
  assert.equal(statusLine(raw), 'HTTP/1.1 200 OK');
  assert.ok(raw.endsWith('got 1000'));
  assert.deepEqual(small.bodies, [{ bytes: 1000, complete: true }]);
});

// ---- connections per client address (plain listeners) ----

/** A connection from `localAddress` that sends `first` and then one keep-alive GET; resolves with what came back once the answer (or the close) is in. */
function connectAndAsk(t: TestContext, port: number, localAddress: string, first = ''): Promise<{ socket: net.Socket; got: string; closed: boolean }> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, localAddress });
      t.after(() => socket.destroy());
      let got = '';
      let done = false;
      const finish = (closed: boolean): void => {
        if (done) return;
        done = true;
        resolve({ socket, got, closed });
      };
      socket.on('error', reject);
      socket.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        // The instance answers "ok" (2 bytes, Content-Length): a whole answer on a connection that stays open.
        if (got.startsWith('HTTP/1.1 200') && got.endsWith('\r\n\r\nok')) finish(false);
      });
      socket.on('close', () => finish(true));
      socket.write(`${first}GET / HTTP/1.1\r\nHost: x\r\n\r\n`);
    }),
    10_000,
    `an answer on a connection from ${localAddress}`,
  );
}

async function capProxy(t: TestContext, max: number, opts: { trustedProxies?: string[]; proxyProtocol?: boolean } = {}): Promise<{ proxy: Proxy; port: number; seen: () => number }> {
  let seen = 0;
  const up = await startServer(t, (_req, res) => {
    seen++;
    res.end('ok');
  });
  const proxy = new Proxy({ logger: silentLogger, clientIdleTimeoutMs: 30_000, headersTimeoutMs: 5000, closeTimeoutMs: 3000, maxConnectionsPerClient: max, trustedProxies: opts.trustedProxies });
  const [addr] = await proxy.listen([{ host: '127.0.0.1', port: 0, proxyProtocol: opts.proxyProtocol }]);
  t.after(() => withTimeout(proxy.close(), 8000, 'proxy.close()'));
  proxy.apply({ services: [service('s', [target('u', up.port)], { isDefault: true })] });
  return { proxy, port: addr!.port, seen: () => seen };
}

test('connections beyond max_connections_per_client get 503 naming the limit and are closed; other addresses are served; a freed place is taken again', async (t) => {
  const { proxy, port, seen } = await capProxy(t, 2);
  const a = await connectAndAsk(t, port, '127.0.0.5');
  const b = await connectAndAsk(t, port, '127.0.0.5');
  assert.deepEqual([a.closed, b.closed], [false, false]);
  const refused = await connectAndAsk(t, port, '127.0.0.5');
  assert.equal(refused.closed, true);
  assert.equal(statusLine(refused.got), 'HTTP/1.1 503 Service Unavailable');
  assert.match(refused.got, /\r\nx-baton-error: too_many_connections\r\n/);
  assert.match(refused.got, /\r\nretry-after: 1\r\n/);
  assert.match(refused.got, /per-client connection limit/);
  assert.equal(seen(), 2, 'the refused connection\'s request never reached the instance');
  assert.equal((await connectAndAsk(t, port, '127.0.0.6')).closed, false, 'another address is served');
  assert.deepEqual(proxy.clientConnections('127.0.0.5'), { open: 2, refusedTotal: 1 });
  a.socket.destroy();
  await waitUntil(() => proxy.clientConnections('127.0.0.5').open === 1, 10_000, 'the closed connection to be counted out');
  assert.equal((await connectAndAsk(t, port, '127.0.0.5')).closed, false, 'the freed place is taken');
});

test('a trusted proxy\'s connections are not capped: each carries many clients', async (t) => {
  const { port } = await capProxy(t, 1, { trustedProxies: ['127.0.0.7'] });
  const conns = [await connectAndAsk(t, port, '127.0.0.7'), await connectAndAsk(t, port, '127.0.0.7'), await connectAndAsk(t, port, '127.0.0.7')];
  assert.deepEqual(conns.map((c) => c.closed), [false, false, false]);
  // Anyone else is.
  await connectAndAsk(t, port, '127.0.0.8');
  assert.equal((await connectAndAsk(t, port, '127.0.0.8')).closed, true);
});

test('behind the PROXY protocol the cap counts the address the header names', async (t) => {
  const { proxy, port, seen } = await capProxy(t, 1, { trustedProxies: ['127.0.0.1'], proxyProtocol: true });
  const header = (src: string): string => `PROXY TCP4 ${src} 10.0.0.1 56324 80\r\n`;
  assert.equal((await connectAndAsk(t, port, '127.0.0.1', header('203.0.113.9'))).closed, false);
  const refused = await connectAndAsk(t, port, '127.0.0.1', header('203.0.113.9'));
  assert.equal(statusLine(refused.got), 'HTTP/1.1 503 Service Unavailable');
  assert.equal((await connectAndAsk(t, port, '127.0.0.1', header('203.0.113.10'))).closed, false, 'another client behind the same balancer is served');
  assert.equal(seen(), 2);
  assert.equal(proxy.clientConnections('203.0.113.9').open, 1);
});

// ---- time to the response head (per service) ----

test('an instance that does not answer within response_timeout: 504, baton\'s failure, and the instance\'s request aborted', async (t) => {
  let arrived = 0;
  let aborted = 0;
  const held: ServerResponse[] = [];
  const up = await startServer(t, (req, res) => {
    arrived++;
    held.push(res);
    // The instance would answer much later; baton must have cut it by then.
    res.on('close', () => {
      if (!res.writableEnded) aborted++;
    });
  });
  t.after(() => held.forEach((r) => r.destroy()));
  const proxy = new Proxy({ logger: silentLogger, clientIdleTimeoutMs: 5000, headersTimeoutMs: 5000, closeTimeoutMs: 3000 });
  const [addr] = await proxy.listen([{ host: '127.0.0.1', port: 0 }]);
  t.after(() => withTimeout(proxy.close(), 8000, 'proxy.close()'));
  proxy.apply({ services: [service('s', [target('u', up.port)], { isDefault: true, upstream: { keepAliveTimeoutMs: 4000, connectTimeoutMs: 1000, responseTimeoutMs: 300 } })] });
  const r = await request(addr!.port, { headers: { accept: 'text/plain' } });
  assert.equal(r.status, 504);
  assert.equal(r.headers['x-baton-error'], 'upstream_timeout');
  assert.match(r.body, /did not answer in time \(response timeout\)/);
  await waitUntil(() => aborted === 1, 10_000, 'the instance to see its request aborted');
  assert.equal(arrived, 1, 'sent once, never retried');
  assert.deepEqual(proxy.counters('s'), { requests: 1, failed: 1, appErrors: 0, retries: 0, websockets: 0 });
  assert.equal(proxy.releaseMetrics('s').find((m) => m.release === 'r1')?.failed, 1);
});
