// Who the app is told the client is: X-Forwarded-*/Forwarded from trusted proxies only,
// and the PROXY protocol (v1 and v2) on listeners that require it. Raw sockets throughout.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { Proxy, type ListenerSpec } from '../../src/proxy/index.ts';
import { silentLogger } from '../../src/core/log.ts';
import { request, service, startServer, target, withTimeout } from '../fixtures/proxy-harness.ts';

type Seen = { url: string; headers: Record<string, string> };

/** An upstream that answers with the URL and headers it received. */
async function startEcho(t: TestContext): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const { port } = await startServer(t, (req, res) => {
    seen.push({ url: req.url!, headers: req.headers as Record<string, string> });
    req.resume();
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ url: req.url, headers: req.headers }));
  });
  return { port, seen };
}

async function startProxyWith(t: TestContext, trustedProxies: string[], listeners: ListenerSpec[], upstreamPort: number): Promise<{ proxy: Proxy; ports: number[] }> {
  const proxy = new Proxy({ logger: silentLogger, clientIdleTimeoutMs: 5000, headersTimeoutMs: 2000, closeTimeoutMs: 3000, trustedProxies });
  const bound = await proxy.listen(listeners);
  t.after(() => withTimeout(proxy.close(), 8000, 'proxy.close()'));
  proxy.apply({ services: [service('s', [target('a', upstreamPort)], { isDefault: true })] });
  return { proxy, ports: bound.map((b) => b.port) };
}

/**
 * Connect from `localAddress`, write each chunk in turn (each after the previous one
 * was answered when `awaitEach`), and collect everything until the proxy closes.
 */
function rawSession(port: number, chunks: (string | Buffer)[], localAddress = '127.0.0.1'): Promise<string> {
  return withTimeout(
    new Promise<string>((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1', localAddress });
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.on('close', () => resolve(got));
      s.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve(got) : reject(err)));
      for (const c of chunks) s.write(c);
    }),
    10_000,
    'the proxy to answer and close a raw connection',
  );
}

/** Bodies of the JSON responses in a raw HTTP/1.1 byte stream (responses with content-length). */
function bodies(raw: string): Seen[] {
  const out: Seen[] = [];
  let rest = raw;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const len = Number(/content-length: (\d+)/i.exec(rest.slice(0, end))?.[1] ?? 0);
    out.push(JSON.parse(rest.slice(end + 4, end + 4 + len)) as Seen);
    rest = rest.slice(end + 4 + len);
  }
  return out;
}

function v2Header(opts: { command: 'PROXY' | 'LOCAL'; family: 'inet' | 'inet6'; src: number[]; dst: number[]; tls?: boolean }): Buffer {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const addrs = Buffer.concat([Buffer.from(opts.src), Buffer.from(opts.dst), Buffer.from([0xd4, 0x31, 0x01, 0xbb])]);
  // PP2_TYPE_SSL: client flags (PP2_CLIENT_SSL), verify (0), no sub-TLVs.
  const tlv = opts.tls ? Buffer.from([0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0]) : Buffer.alloc(0);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(addrs.length + tlv.length);
  const verCmd = opts.command === 'PROXY' ? 0x21 : 0x20;
  const fam = opts.family === 'inet' ? 0x11 : 0x21;
  return Buffer.concat([sig, Buffer.from([verCmd, fam]), len, addrs, tlv]);
}

const GET = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: site.test\r\n${extra}\r\n`;
const LAST = (path: string, extra = ''): string => GET(path, `${extra}Connection: close\r\n`);

test('X-Forwarded-*/Forwarded are kept from a trusted proxy and replaced from anyone else', async (t) => {
  const app = await startEcho(t);
  const { ports } = await startProxyWith(t, ['127.0.0.2/32'], [{ host: '127.0.0.1', port: 0 }], app.port);
  const spoof = { 'x-forwarded-for': '198.51.100.1', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.test', 'forwarded': 'for=198.51.100.1;proto=https' };

  const fromTrusted = JSON.parse((await request(ports[0]!, { headers: { host: 'site.test', ...spoof }, localAddress: '127.0.0.2' })).body) as Seen;
  assert.equal(fromTrusted.headers['x-forwarded-for'], '198.51.100.1, 127.0.0.2');
  assert.equal(fromTrusted.headers['x-forwarded-proto'], 'https');
  assert.equal(fromTrusted.headers['x-forwarded-host'], 'public.test');
  assert.equal(fromTrusted.headers['forwarded'], 'for=198.51.100.1;proto=https, for=127.0.0.2;host="site.test";proto=http');

  const fromClient = JSON.parse((await request(ports[0]!, { headers: { host: 'site.test', ...spoof }, localAddress: '127.0.0.1' })).body) as Seen;
  assert.equal(fromClient.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(fromClient.headers['x-forwarded-proto'], 'http');
  assert.equal(fromClient.headers['x-forwarded-host'], 'site.test');
  assert.equal(fromClient.headers['forwarded'], 'for=127.0.0.1;host="site.test";proto=http');
});

test('PROXY protocol v1: the app sees the client the header names, on every request of the connection', async (t) => {
  const app = await startEcho(t);
  const { ports } = await startProxyWith(t, ['127.0.0.1'], [{ host: '127.0.0.1', port: 0, proxyProtocol: true }], app.port);
  // The header and the first request in one write, a second request on its own, a third that closes.
  const raw = await rawSession(ports[0]!, ['PROXY TCP4 203.0.113.9 10.0.0.1 56324 80\r\n' + GET('/one', 'X-Forwarded-For: 6.6.6.6\r\n'), GET('/two'), LAST('/three')]);
  const seen = bodies(raw);
  assert.deepEqual(seen.map((s) => s.url), ['/one', '/two', '/three']);
  for (const s of seen) {
    assert.equal(s.headers['x-forwarded-for'], '203.0.113.9', s.url);
    assert.equal(s.headers['x-forwarded-proto'], 'http', s.url);
    assert.equal(s.headers['forwarded'], 'for=203.0.113.9;host="site.test";proto=http', s.url);
  }

  // IPv6, and a header that arrives in pieces.
  const raw6 = await rawSession(ports[0]!, ['PROXY TCP6 2001:db8::9 2001', ':db8::1 4000 80\r\n', LAST('/six')]);
  assert.equal(bodies(raw6)[0]!.headers['x-forwarded-for'], '2001:db8::9');
  // UNKNOWN: the balancer could not tell; the peer is the client.
  const rawU = await rawSession(ports[0]!, ['PROXY UNKNOWN\r\n' + LAST('/unknown')]);
  assert.equal(bodies(rawU)[0]!.headers['x-forwarded-for'], '127.0.0.1');
});

test('PROXY protocol v2: IPv4 and IPv6 sources, the TLS flag, LOCAL health checks', async (t) => {
  const app = await startEcho(t);
  const { ports } = await startProxyWith(t, ['127.0.0.0/8'], [{ host: '127.0.0.1', port: 0, proxyProtocol: true }], app.port);
  const port = ports[0]!;

  const v4 = bodies(await rawSession(port, [Buffer.concat([v2Header({ command: 'PROXY', family: 'inet', src: [192, 0, 2, 33], dst: [10, 0, 0, 1] }), Buffer.from(GET('/a'))]), LAST('/b')]));
  assert.deepEqual(v4.map((s) => [s.url, s.headers['x-forwarded-for'], s.headers['x-forwarded-proto']]), [['/a', '192.0.2.33', 'http'], ['/b', '192.0.2.33', 'http']]);

  const src6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x09];
  const v6 = bodies(await rawSession(port, [v2Header({ command: 'PROXY', family: 'inet6', src: src6, dst: new Array<number>(16).fill(0), tls: true }), LAST('/tls')]));
  assert.equal(v6[0]!.headers['x-forwarded-for'], '2001:db8::9');
  assert.equal(v6[0]!.headers['x-forwarded-proto'], 'https');
  assert.equal(v6[0]!.headers['forwarded'], 'for="[2001:db8::9]";host="site.test";proto=https');

  // LOCAL: the balancer's own connection (a health check): the peer is the client.
  const local = bodies(await rawSession(port, [Buffer.concat([v2Header({ command: 'LOCAL', family: 'inet', src: [0, 0, 0, 0], dst: [0, 0, 0, 0] }), Buffer.from(LAST('/check'))])]));
  assert.equal(local[0]!.headers['x-forwarded-for'], '127.0.0.1');
});

test('PROXY protocol: a missing or bad header, or one from an untrusted peer, closes the connection without a word', async (t) => {
  const app = await startEcho(t);
  const { proxy, ports } = await startProxyWith(t, ['127.0.0.1'], [{ host: '127.0.0.1', port: 0, proxyProtocol: true }, { host: '127.0.0.1', port: 0 }], app.port);
  const port = ports[0]!;
  const bad: [string, (string | Buffer)[], string?][] = [
    ['no header', [LAST('/none')]],
    ['v1 with a bad address', ['PROXY TCP4 203.0.113.999 10.0.0.1 1 80\r\n' + LAST('/bad-addr')]],
    ['v1 TCP6 with IPv4 addresses', ['PROXY TCP6 203.0.113.9 10.0.0.1 1 80\r\n' + LAST('/bad-family')]],
    ['v1 with a bad port', ['PROXY TCP4 203.0.113.9 10.0.0.1 70000 80\r\n' + LAST('/bad-port')]],
    ['v1 without CRLF within 107 bytes', ['PROXY TCP4 ' + 'x'.repeat(120)]],
    ['v2 with version 3', [Buffer.concat([v2Header({ command: 'PROXY', family: 'inet', src: [1, 2, 3, 4], dst: [5, 6, 7, 8] }).fill(0x31, 12, 13), Buffer.from(LAST('/v3'))])]],
    ['v2 with a truncated TLV', [Buffer.concat([v2Header({ command: 'PROXY', family: 'inet', src: [1, 2, 3, 4], dst: [5, 6, 7, 8] }).fill(0x0e, 15, 16), Buffer.from([0x20, 0x00]), Buffer.from(LAST('/tlv'))])]],
    ['a valid header from an untrusted peer', ['PROXY TCP4 203.0.113.9 10.0.0.1 56324 80\r\n' + LAST('/untrusted')], '127.0.0.2'],
  ];
  for (const [what, chunks, from] of bad) {
    const got = await rawSession(port, chunks, from);
    assert.equal(got, '', `${what}: nothing is answered`);
  }
  // A client that sends half a header and goes quiet is closed at the headers timeout (2 s here).
  assert.equal(await rawSession(port, ['PROXY TCP4 203.0.113.9']), '');
  assert.equal(app.seen.length, 0, 'nothing reached the app');
  assert.equal(proxy.counters('s').requests, 0);

  // The listener goes on serving good connections, and the plain listener never expects a header.
  const ok = bodies(await rawSession(port, ['PROXY TCP4 203.0.113.9 10.0.0.1 56324 80\r\n' + LAST('/ok')]));
  assert.equal(ok[0]!.headers['x-forwarded-for'], '203.0.113.9');
  const plain = await rawSession(ports[1]!, ['PROXY TCP4 203.0.113.9 10.0.0.1 56324 80\r\n' + LAST('/plain')]);
  assert.match(plain, /^HTTP\/1\.1 400 /, 'a PROXY line on a plain listener is a bad request, not a header');
});

test('PROXY protocol: allow lists match the client the header names', async (t) => {
  const app = await startEcho(t);
  const { proxy, ports } = await startProxyWith(t, ['127.0.0.1'], [{ host: '127.0.0.1', port: 0, proxyProtocol: true }], app.port);
  proxy.apply({
    services: [service('s', [target('a', app.port)], { isDefault: true, maintenance: { html: '<p>down</p>', retryAfterSeconds: 5, allow: ['203.0.113.0/24'] } })],
  });
  const allowed = await rawSession(ports[0]!, ['PROXY TCP4 203.0.113.9 10.0.0.1 56324 80\r\n' + LAST('/in')]);
  assert.match(allowed, /^HTTP\/1\.1 200 /);
  const refused = await rawSession(ports[0]!, ['PROXY TCP4 198.51.100.9 10.0.0.1 56324 80\r\n' + LAST('/out')]);
  assert.match(refused, /^HTTP\/1\.1 503 /);
});

test('a listener that requires the PROXY protocol without trusted proxies is refused', async () => {
  const proxy = new Proxy({ logger: silentLogger, clientIdleTimeoutMs: 5000, headersTimeoutMs: 2000 });
  try {
    await assert.rejects(proxy.listen([{ host: '127.0.0.1', port: 0, proxyProtocol: true }]), /accepted only from trusted proxies/);
  } finally {
    await proxy.close();
  }
});

test('PROXY protocol: a WebSocket upgrade carries the client the header names', async (t) => {
  const seen: Record<string, string | undefined>[] = [];
  const upstream = http.createServer((_req, res) => res.end('plain'));
  upstream.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    seen.push({ xff: req.headers['x-forwarded-for'] as string | undefined, forwarded: req.headers['forwarded'] as string | undefined });
    socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    upstream.closeAllConnections();
    return new Promise<void>((resolve) => upstream.close(() => resolve()));
  });
  const { ports } = await startProxyWith(t, ['127.0.0.1'], [{ host: '127.0.0.1', port: 0, proxyProtocol: true }], (upstream.address() as net.AddressInfo).port);
  const handshake =
    'PROXY TCP4 203.0.113.9 10.0.0.1 56324 80\r\n' +
    'GET /ws HTTP/1.1\r\nHost: site.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Forwarded-For: 6.6.6.6\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
  const got = await rawSession(ports[0]!, [handshake]);
  assert.match(got, /^HTTP\/1\.1 101 /);
  assert.deepEqual(seen, [{ xff: '203.0.113.9', forwarded: 'for=203.0.113.9;host="site.test";proto=http' }]);
});
