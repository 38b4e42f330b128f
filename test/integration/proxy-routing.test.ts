import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { closedPort, rawExchange, request, service, startProxy, startServer, target, withTimeout } from '../fixtures/proxy-harness.ts';

/** An upstream that answers with its name and echoes what it received. */
function namedHandler(name: string): http.RequestListener {
  return (req, res) => {
    res.setHeader('content-type', 'application/json');
    res.setHeader('connection', 'keep-alive, x-upstream-hop');
    res.setHeader('x-upstream-hop', 'secret');
    res.end(JSON.stringify({ name, url: req.url, headers: req.headers }));
  };
}

test('routes by Host (case, port and trailing dot ignored) and falls back to the default service', async (t) => {
  const a = await startServer(t, namedHandler('a'));
  const b = await startServer(t, namedHandler('b'));
  const { proxy, port } = await startProxy(t);
  proxy.apply({
    services: [
      service('a', [target('a1', a.port)], { hosts: ['a.test', 'www.a.test'] }),
      service('b', [target('b1', b.port)], { hosts: ['b.test'], isDefault: true }),
    ],
  });
  const name = async (host: string): Promise<string> => {
    const r = await request(port, { path: '/x?y=1', headers: { host } });
    assert.equal(r.status, 200);
    return (JSON.parse(r.body) as { name: string }).name;
  };
  assert.equal(await name('a.test'), 'a');
  assert.equal(await name('WWW.A.TEST:8080'), 'a');
  assert.equal(await name('a.test.'), 'a');
  assert.equal(await name('b.test'), 'b');
  assert.equal(await name('unknown.test'), 'b');
  assert.equal(proxy.counters('a').requests, 3);
  assert.equal(proxy.counters('b').requests, 2);
  assert.deepEqual(proxy.counters('nope'), { requests: 0, failed: 0, retries: 0, websockets: 0 });

  // Without a default service, an unknown host gets baton's 404.
  proxy.apply({ services: [service('a', [target('a1', a.port)], { hosts: ['a.test'] })] });
  const r = await request(port, { headers: { host: 'other.test' } });
  assert.equal(r.status, 404);
  assert.equal(r.headers['x-baton-error'], 'no_route');
  assert.match(r.headers['content-type']!, /text\/html/);
});

test('forwards the request faithfully: Host kept, X-Forwarded-*, hop-by-hop removed both ways', async (t) => {
  const a = await startServer(t, namedHandler('a'));
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('a', [target('a1', a.port)], { isDefault: true })] });
  const r = await request(port, {
    path: '/p/q?x=%20y',
    headers: {
      'host': 'Site.test:81',
      'connection': 'keep-alive, x-client-hop',
      'x-client-hop': 'drop',
      'proxy-connection': 'keep-alive',
      'te': 'trailers',
      'x-forwarded-for': '203.0.113.7',
      'x-custom': 'kept',
    },
  });
  assert.equal(r.status, 200);
  const seen = JSON.parse(r.body) as { url: string; headers: Record<string, string> };
  assert.equal(seen.url, '/p/q?x=%20y');
  assert.equal(seen.headers['host'], 'Site.test:81');
  assert.equal(seen.headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
  assert.equal(seen.headers['x-forwarded-proto'], 'http');
  assert.equal(seen.headers['x-forwarded-host'], 'Site.test:81');
  assert.equal(seen.headers['x-custom'], 'kept');
  for (const h of ['x-client-hop', 'proxy-connection', 'te']) assert.equal(seen.headers[h], undefined, h);
  // Response side: the upstream's Connection-nominated header is gone.
  assert.equal(r.headers['x-upstream-hop'], undefined);
  assert.equal(r.headers['content-type'], 'application/json');
});

test('503 with Retry-After when the service has no instance; text/plain when preferred', async (t) => {
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('a', [], { isDefault: true })] });
  const html = await request(port);
  assert.equal(html.status, 503);
  assert.equal(html.headers['retry-after'], '1');
  assert.equal(html.headers['x-baton-error'], 'no_instance');
  assert.match(html.body, /<html>/);
  const plain = await request(port, { headers: { accept: 'text/plain, text/html;q=0.5' } });
  assert.equal(plain.status, 503);
  assert.match(plain.headers['content-type']!, /^text\/plain/);
  assert.doesNotMatch(plain.body, /</);
  assert.deepEqual(proxy.counters('a'), { requests: 2, failed: 2, retries: 0, websockets: 0 });
});

test('502 when the only target refuses; with a second target the request is retried there', async (t) => {
  const dead = await closedPort();
  const live = await startServer(t, namedHandler('live'));
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('a', [target('dead', dead)], { isDefault: true })] });
  const r = await request(port);
  assert.equal(r.status, 502);
  assert.equal(r.headers['x-baton-error'], 'upstream_unreachable');
  assert.deepEqual(proxy.counters('a'), { requests: 1, failed: 1, retries: 0, websockets: 0 });

  proxy.apply({ services: [service('a', [target('dead', dead), target('live', live.port)], { isDefault: true, balance: 'round_robin' })] });
  // Round robin makes every other first attempt go to the dead target; a POST with a body too.
  for (let i = 0; i < 4; i++) {
    const ok = await request(port, { method: i % 2 ? 'POST' : 'GET', body: i % 2 ? 'payload' : undefined });
    assert.equal(ok.status, 200, `request ${i}`);
    assert.equal((JSON.parse(ok.body) as { name: string }).name, 'live');
  }
  const c = proxy.counters('a');
  assert.equal(c.failed, 1);
  // A refused attempt does not take the live target's turn: dead, live, dead, live.
  assert.equal(c.retries, 2);
  const stats = Object.fromEntries(proxy.targets().map((s) => [s.id, s]));
  assert.equal(stats['live']!.requests, 4);
  assert.equal(stats['dead']!.requests, 3);
  assert.equal(stats['live']!.inflight, 0);
});

test('malformed requests get a 4xx and do not desynchronise the connection', async (t) => {
  let reached = 0;
  const a = await startServer(t, (req, res) => {
    reached++;
    req.resume();
    res.end('ok');
  });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('a', [target('a1', a.port)], { isDefault: true })] });

  // Request smuggling attempt: both Content-Length and Transfer-Encoding.
  const smuggle = await rawExchange(
    port,
    'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n',
  );
  assert.match(smuggle, /^HTTP\/1\.1 400 /);
  assert.doesNotMatch(smuggle, /200 OK/);
  // Garbage request line.
  assert.match(await rawExchange(port, 'HELLO\r\n\r\n'), /^HTTP\/1\.1 400 /);
  // Invalid header name.
  assert.match(await rawExchange(port, 'GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n'), /^HTTP\/1\.1 400 /);
  // Oversized headers.
  assert.match(await rawExchange(port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`), /^HTTP\/1\.1 431 /);
  assert.equal(reached, 0);

  // Garbage after a complete exchange on a keep-alive connection: 400, then the connection closes.
  const got = await withTimeout(
    new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      let data = '';
      s.on('data', (d: Buffer) => {
        data += d.toString('latin1');
        if (data.endsWith('ok') && !data.includes('400')) s.write('GET /\x01 HTTP/1.1\r\n\r\n');
      });
      s.on('close', () => resolve(data));
      s.on('error', reject);
      s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    }),
    10_000,
    'keep-alive exchange then 400',
  );
  assert.match(got, /^HTTP\/1\.1 200 OK[^]*okHTTP\/1\.1 400 /);
  assert.equal(reached, 1);
});
