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
  assert.deepEqual(proxy.counters('nope'), { requests: 0, failed: 0, appErrors: 0, retries: 0, websockets: 0 });

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
  // The client is not a trusted proxy: its X-Forwarded-For is replaced, not appended to.
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
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
  assert.deepEqual(proxy.counters('a'), { requests: 2, failed: 2, appErrors: 0, retries: 0, websockets: 0 });
});

test('502 when the only target refuses; with a second target the request is retried there', async (t) => {
  const dead = await closedPort(t);
  const live = await startServer(t, namedHandler('live'));
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('a', [target('dead', dead)], { isDefault: true })] });
  const r = await request(port);
  assert.equal(r.status, 502);
  assert.equal(r.headers['x-baton-error'], 'upstream_unreachable');
  assert.deepEqual(proxy.counters('a'), { requests: 1, failed: 1, appErrors: 0, retries: 0, websockets: 0 });

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

/** Send raw bytes; resolve with what arrives up to the end of the first response head. */
function rawHead(port: number, data: string): Promise<string> {
  return withTimeout(
    new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        const end = got.indexOf('\r\n\r\n');
        if (end >= 0) {
          s.destroy();
          resolve(got.slice(0, end + 4));
        }
      });
      s.on('close', () => resolve(got));
      s.on('error', reject);
      s.write(data);
    }),
    10_000,
    'a response head on a raw connection',
  );
}

test('absolute-form: routed on the target\'s authority and forwarded origin-form with that Host; bad targets get 400', async (t) => {
  const pub = await startServer(t, namedHandler('public'));
  const other = await startServer(t, namedHandler('other'));
  const { proxy, port } = await startProxy(t);
  proxy.apply({
    services: [
      service('public', [target('p1', pub.port)], { hosts: ['public.test'], isDefault: true }),
      service('other', [target('o1', other.port)], { hosts: ['other.test'] }),
    ],
  });
  const body = (raw: string): { name: string; url: string; headers: Record<string, string> } => JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as never;

  // Host says public.test, the target says other.test: the target wins, for routing and for the app.
  const r1 = await rawExchange(port, 'GET http://other.test/reset?x=1 HTTP/1.1\r\nHost: public.test\r\nConnection: close\r\n\r\n');
  assert.match(r1, /^HTTP\/1\.1 200 /);
  const seen1 = body(r1);
  assert.equal(seen1.name, 'other');
  assert.equal(seen1.url, '/reset?x=1');
  assert.equal(seen1.headers['host'], 'other.test');
  assert.equal(seen1.headers['x-forwarded-host'], 'other.test');

  // An authority no service names goes where that Host would go (the default service), and the app sees it as Host.
  const r2 = await rawExchange(port, 'GET http://evil.example/reset HTTP/1.1\r\nHost: public.test\r\nConnection: close\r\n\r\n');
  const seen2 = body(r2);
  assert.equal(seen2.name, 'public');
  assert.equal(seen2.url, '/reset');
  assert.equal(seen2.headers['host'], 'evil.example');

  // No path: "/".
  const seen3 = body(await rawExchange(port, 'GET http://public.test HTTP/1.1\r\nHost: public.test\r\nConnection: close\r\n\r\n'));
  assert.equal(seen3.url, '/');

  // Userinfo or another scheme: 400, never forwarded.
  for (const target of ['http://user@public.test/', 'ftp://public.test/']) {
    const r = await rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: public.test\r\nConnection: close\r\n\r\n`);
    assert.match(r, /^HTTP\/1\.1 400 /, target);
    assert.match(r, /x-baton-error: bad_request/i, target);
  }
  assert.equal(proxy.counters('public').requests, 2);
  assert.equal(proxy.counters('other').requests, 1);
});

test('absolute-form WebSocket upgrade: routed on the target\'s authority, forwarded origin-form with that Host', async (t) => {
  const seen: { name: string; url: string; host: string }[] = [];
  const upgrader = (name: string) => {
    const server = http.createServer((_req, res) => res.end(name));
    server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
      seen.push({ name, url: req.url!, host: req.headers.host! });
      socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    });
    return server;
  };
  const servers = [upgrader('public'), upgrader('other')];
  const ports: number[] = [];
  for (const s of servers) {
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      s.closeAllConnections();
      return new Promise<void>((resolve) => s.close(() => resolve()));
    });
    ports.push((s.address() as net.AddressInfo).port);
  }
  const { proxy, port } = await startProxy(t);
  proxy.apply({
    services: [
      service('public', [target('p1', ports[0]!)], { hosts: ['public.test'], isDefault: true }),
      service('other', [target('o1', ports[1]!)], { hosts: ['other.test'] }),
    ],
  });
  const handshake = (requestTarget: string): string =>
    `GET ${requestTarget} HTTP/1.1\r\nHost: public.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
  const r = await rawHead(port, handshake('http://other.test/ws?room=1'));
  assert.match(r, /^HTTP\/1\.1 101 /);
  assert.deepEqual(seen, [{ name: 'other', url: '/ws?room=1', host: 'other.test' }]);

  const bad = await rawHead(port, handshake('http://user@other.test/ws'));
  assert.match(bad, /^HTTP\/1\.1 400 /);
  assert.equal(seen.length, 1);
});
