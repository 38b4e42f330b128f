// The PROXY protocol and trusted proxies on TLS listeners: a real HAProxy in
// `mode tcp` with `send-proxy-v2` in front of baton's TLS listener (the header
// arrives before the ClientHello), clients verifying baton's certificate
// against the test CA. The app sees the client HAProxy saw, over HTTP/1.1 and
// HTTP/2; the per-client cap counts that client, not the balancer; a PROXY
// header from an untrusted peer, or none from a trusted one, is refused; and
// on a TLS listener without the PROXY protocol a trusted peer's
// X-Forwarded-For is kept, as on the plain listeners.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { CertificateStore } from '../../src/tls/index.ts';
import { Proxy, type ListenerSpec } from '../../src/proxy/index.ts';
import type { TlsListenerOptions } from '../../src/proxy/listeners.ts';
import { silentLogger } from '../../src/core/log.ts';
import { service, startServer, target, waitUntil, withTimeout } from '../fixtures/proxy-harness.ts';
import { makeCa, tlsOptions, type TestCa } from '../fixtures/tls-certs.ts';
import { startLoad } from '../helpers/load.ts';

/** HAProxy's own loopback address (its connections to baton come from it: `source`), the one baton trusts. */
const BALANCER = '127.0.0.10';

type Seen = { headers: Record<string, string> };
/** A response large enough to need many TLS records and the socket's backpressure. */
const BIG = 4 * 1024 * 1024;

interface Setup {
  ca: TestCa;
  tlsPort: number;
  seen: Seen[];
}

async function startBaton(t: TestContext, listener: Omit<ListenerSpec, 'port'>, trustedProxies: string[], extra: Partial<TlsListenerOptions> = {}): Promise<Setup> {
  const seen: Seen[] = [];
  const app = await startServer(t, (req, res) => {
    if (req.url === '/big') {
      req.resume();
      res.end(Buffer.alloc(BIG, 'x'));
      return;
    }
    seen.push({ headers: req.headers as Record<string, string> });
    req.resume();
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ headers: req.headers }));
  });
  const ca = makeCa(t);
  const a = ca.write('a', ['a.test']);
  const store = new CertificateStore({ logger: silentLogger });
  await store.loadFiles([{ hosts: ['a.test'], certFile: a.certFile, keyFile: a.keyFile, isDefault: true }]);
  t.after(() => store.close());
  const proxy = new Proxy({ logger: silentLogger, clientIdleTimeoutMs: 5000, headersTimeoutMs: 5000, closeTimeoutMs: 3000, trustedProxies });
  t.after(() => withTimeout(proxy.close(), 8000, 'proxy.close()'));
  const [bound] = await proxy.listenTls([{ ...listener, port: 0 }], tlsOptions(store, extra));
  proxy.apply({ services: [service('s', [target('a', app.port)], { isDefault: true })] });
  return { ca, tlsPort: bound!.port, seen };
}

/**
 * HAProxy in TCP mode on BALANCER, sending PROXY v2 to baton's TLS port. Its
 * listening socket is made here and handed over (`bind fd@3`), so the port is
 * held from choice to use. Returns its port.
 */
async function startHaproxy(t: TestContext, dir: string, tlsPort: number): Promise<number> {
  const listening = net.createServer();
  await new Promise<void>((resolve, reject) => {
    listening.once('error', reject);
    listening.listen(0, BALANCER, () => resolve());
  });
  const port = (listening.address() as net.AddressInfo).port;
  const fd = (listening as unknown as { _handle: { fd: number } })._handle.fd;
  const statsSocket = path.join(dir, 'haproxy.sock');
  const cfgFile = path.join(dir, 'haproxy.cfg');
  writeFileSync(cfgFile, [
    'global',
    `  stats socket ${statsSocket} mode 600 level admin`,
    '  maxconn 200',
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    '  timeout client 30s',
    '  timeout server 30s',
    'frontend fe',
    '  bind fd@3',
    '  default_backend be',
    'backend be',
    `  server baton 127.0.0.1:${tlsPort} send-proxy-v2 source ${BALANCER}`,
    '',
  ].join('\n'));
  const log = path.join(dir, 'haproxy.log');
  const out = openSync(log, 'a');
  const proc: ChildProcess = spawn('haproxy', ['-f', cfgFile, '-db'], { stdio: ['ignore', out, out, fd], detached: true });
  closeSync(out);
  // HAProxy holds its copy of the socket now; ours would accept connections too.
  listening.close();
  const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) process.kill(-proc.pid!, 'SIGKILL');
    await withTimeout(gone, 5000, 'haproxy to exit');
  });
  await waitUntil(() => {
    if (proc.exitCode !== null) throw new Error(`haproxy exited with ${proc.exitCode}:\n${readFileSync(log, 'utf8')}`);
    return existsSync(statsSocket);
  }, 10_000, 'haproxy to start (its stats socket)');
  return port;
}

/** One HTTPS/1.1 request to `port` on `host` from `localAddress`, verifying a.test's certificate. */
function httpsGet(s: Setup, host: string, port: number, localAddress: string, headers: Record<string, string> = {}): Promise<{ status: number; body: { headers: Record<string, string> } }> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const req = https.request({ host, port, localAddress, servername: 'a.test', ca: s.ca.caPem, agent: false, path: '/', headers: { host: 'a.test', ...headers } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(body) as { headers: Record<string, string> } }));
      });
      req.on('error', reject);
      req.end();
    }),
    10_000,
    `GET https://a.test/ via ${host}:${port} from ${localAddress}`,
  );
}

/** A TLS handshake from `localAddress`: resolves with the open socket, or with the error that ended it. */
function handshake(t: TestContext, s: Setup, port: number, localAddress: string, host = BALANCER, before?: Buffer): Promise<tls.TLSSocket | Error> {
  return withTimeout(
    new Promise((resolve) => {
      const raw = net.connect({ host, port, localAddress });
      if (before !== undefined) {
        // The header and the ClientHello in one write (one segment), as a balancer may send them.
        raw.cork();
        raw.write(before);
        process.nextTick(() => raw.uncork());
      }
      const socket = tls.connect({ socket: raw, servername: 'a.test', ca: s.ca.caPem });
      t.after(() => socket.destroy());
      socket.once('secureConnect', () => resolve(socket));
      socket.once('error', (err) => resolve(err));
      socket.once('close', () => resolve(new Error('closed before the handshake finished')));
    }),
    10_000,
    `a TLS handshake via ${host}:${port} from ${localAddress}`,
  );
}

function v2Header(src: number[], dst: number[]): Buffer {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const addrs = Buffer.concat([Buffer.from(src), Buffer.from(dst), Buffer.from([0xd4, 0x31, 0x01, 0xbb])]);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(addrs.length);
  return Buffer.concat([sig, Buffer.from([0x21, 0x11]), len, addrs]);
}

test('behind HAProxy (mode tcp, send-proxy-v2): the app sees the client HAProxy saw, over HTTP/1.1 and HTTP/2', async (t) => {
  const s = await startBaton(t, { host: '127.0.0.1', proxyProtocol: true }, [BALANCER]);
  const hp = await startHaproxy(t, s.ca.dir, s.tlsPort);

  // HTTP/1.1; the client's own X-Forwarded-For is not trusted (the client is not a trusted proxy).
  const r = await httpsGet(s, BALANCER, hp, '127.0.0.77', { 'x-forwarded-for': '203.0.113.9' });
  assert.equal(r.status, 200);
  assert.equal(r.body.headers['x-forwarded-for'], '127.0.0.77');
  assert.equal(r.body.headers['x-forwarded-proto'], 'https');
  assert.match(r.body.headers['forwarded'] ?? '', /for=127\.0\.0\.77/);

  // HTTP/2 through the same balancer, from another client address.
  const session = http2.connect(`https://${BALANCER}:${hp}`, { ca: s.ca.caPem, servername: 'a.test', localAddress: '127.0.0.78' } as http2.SecureClientSessionOptions);
  session.on('error', () => undefined);
  t.after(() => session.destroy());
  const h2 = await withTimeout(
    new Promise<{ status: number; alpn: string | false | null; body: { headers: Record<string, string> } }>((resolve, reject) => {
      const req = session.request({ ':path': '/', ':authority': 'a.test' });
      let status = 0;
      let body = '';
      req.setEncoding('utf8');
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (c: string) => (body += c));
      req.on('end', () => resolve({ status, alpn: (session.socket as tls.TLSSocket).alpnProtocol, body: JSON.parse(body) as { headers: Record<string, string> } }));
      req.on('error', reject);
      req.end();
    }),
    10_000,
    'an HTTP/2 request through HAProxy',
  );
  assert.equal(h2.alpn, 'h2');
  assert.equal(h2.status, 200);
  assert.equal(h2.body.headers['x-forwarded-for'], '127.0.0.78');
  assert.equal(h2.body.headers['host'], 'a.test');

  // A large response comes through whole (the TLS socket reads from the TCP one handed over after the header).
  const big = await withTimeout(
    new Promise<number>((resolve, reject) => {
      https.get({ host: BALANCER, port: hp, localAddress: '127.0.0.77', servername: 'a.test', ca: s.ca.caPem, agent: false, path: '/big', headers: { host: 'a.test' } }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => (n += c.length));
        res.on('end', () => resolve(n));
        res.on('error', reject);
      }).on('error', reject);
    }),
    20_000,
    'a 4 MiB response through HAProxy',
  );
  assert.equal(big, BIG);

  // Under load, a new connection (PROXY header + TLS handshake) per HTTP/1.1 request, and HTTP/2 sessions: nothing fails.
  for (const http2 of [false, true]) {
    const load = startLoad({ url: `https://${BALANCER}:${hp}/`, concurrency: 8, keepAlive: false, http2, maxRequests: 200, maxMs: 60_000, localAddress: '127.0.0.80', tls: { ca: s.ca.caPem, servername: 'a.test' } });
    await load.waitFor(200, 60_000);
    const res = await load.stop();
    assert.equal(res.failed, 0, `${http2 ? 'h2' : 'HTTP/1.1'}: ${JSON.stringify(res.errors)}`);
    assert.ok(res.ok >= 200, `${http2 ? 'h2' : 'HTTP/1.1'}: ${res.ok} answered`);
  }
  assert.equal(s.seen.at(-1)?.headers['x-forwarded-for'], '127.0.0.80');
});

test('behind HAProxy: the per-client connection cap counts the client the header names, not the balancer', async (t) => {
  const s = await startBaton(t, { host: '127.0.0.1', proxyProtocol: true }, [BALANCER], { maxConnectionsPerClient: 2 });
  const hp = await startHaproxy(t, s.ca.dir, s.tlsPort);
  const first = await handshake(t, s, hp, '127.0.0.77');
  const second = await handshake(t, s, hp, '127.0.0.77');
  assert.ok(first instanceof tls.TLSSocket && second instanceof tls.TLSSocket, `two connections from 127.0.0.77 are served: ${String(first)} / ${String(second)}`);
  const third = await handshake(t, s, hp, '127.0.0.77');
  assert.ok(third instanceof Error, 'a third connection from 127.0.0.77 is closed before its handshake');
  // Every one of these came from HAProxy's one address: another client is still served.
  const other = await handshake(t, s, hp, '127.0.0.79');
  assert.ok(other instanceof tls.TLSSocket, `a connection from 127.0.0.79 is served: ${String(other)}`);
  // Once one of 127.0.0.77's connections closes, it may open another.
  first.destroy();
  let again: tls.TLSSocket | Error = new Error('not tried');
  const deadline = performance.now() + 5000;
  while (!(again instanceof tls.TLSSocket) && performance.now() < deadline) again = await handshake(t, s, hp, '127.0.0.77');
  assert.ok(again instanceof tls.TLSSocket, `127.0.0.77 is served again once one of its connections closed: ${String(again)}`);
});

test('a PROXY header on a TLS listener: refused from an untrusted peer, required from a trusted one', async (t) => {
  const s = await startBaton(t, { host: '127.0.0.1', proxyProtocol: true }, [BALANCER]);
  const header = v2Header([192, 0, 2, 1], [127, 0, 0, 1]);
  // A valid header and ClientHello from a peer that is not a trusted proxy: closed, nothing served.
  const untrusted = await handshake(t, s, s.tlsPort, '127.0.0.20', '127.0.0.1', header);
  assert.ok(untrusted instanceof Error, 'an untrusted peer with a PROXY header gets no TLS session');
  // The trusted balancer without a header (TLS at once): closed too.
  const bare = await handshake(t, s, s.tlsPort, BALANCER, '127.0.0.1');
  assert.ok(bare instanceof Error, 'a connection without a PROXY header gets no TLS session');
  assert.equal(s.seen.length, 0, 'the app saw nothing');
  // The trusted balancer with the header and the ClientHello in one segment: served, as the client it names.
  const ok = await handshake(t, s, s.tlsPort, BALANCER, '127.0.0.1', header);
  assert.ok(ok instanceof tls.TLSSocket, `the trusted peer with a header is served: ${String(ok)}`);
  const reply = await withTimeout(
    new Promise<string>((resolve) => {
      let got = '';
      ok.on('data', (d: Buffer) => (got += d.toString()));
      ok.on('end', () => resolve(got));
      ok.write('GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n');
    }),
    10_000,
    'a request over the PROXY + TLS connection',
  );
  assert.match(reply, /^HTTP\/1\.1 200/);
  assert.equal(s.seen.at(-1)?.headers['x-forwarded-for'], '192.0.2.1');
});

test('a TLS listener without the PROXY protocol keeps a trusted peer\'s X-Forwarded-For and replaces anyone else\'s', async (t) => {
  const s = await startBaton(t, { host: '127.0.0.1' }, ['127.0.0.30']);
  const trusted = await httpsGet(s, '127.0.0.1', s.tlsPort, '127.0.0.30', { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'http' });
  assert.equal(trusted.body.headers['x-forwarded-for'], '203.0.113.9, 127.0.0.30');
  assert.equal(trusted.body.headers['x-forwarded-proto'], 'http', 'a trusted proxy says which scheme its client used');
  const other = await httpsGet(s, '127.0.0.1', s.tlsPort, '127.0.0.31', { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'http' });
  assert.equal(other.body.headers['x-forwarded-for'], '127.0.0.31');
  assert.equal(other.body.headers['x-forwarded-proto'], 'https');
});
