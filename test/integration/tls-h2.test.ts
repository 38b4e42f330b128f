// HTTP/2 over TLS (ALPN) to HTTP/1.1 instances, with real clients (Node's
// http2, nghttp): :authority becomes Host, bodies go through, hop-by-hop
// fields from an instance never reach an HTTP/2 response, the limits are
// advertised, rapid reset ends the abusive session and not a concurrent
// client's, and WebSockets keep working over HTTP/1.1 on the same listener.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { execFile } from 'node:child_process';
import { WebSocket } from 'ws';
import { CertificateStore } from '../../src/tls/index.ts';
import { H2_RESET_BURST, type TlsListenerOptions } from '../../src/proxy/listeners.ts';
import { silentLogger } from '../../src/core/log.ts';
import type { Proxy } from '../../src/proxy/index.ts';
import { service, startApp, startProxy, startServer, target, withTimeout } from '../fixtures/proxy-harness.ts';
import { listenTls, makeCa, type TestCa } from '../fixtures/tls-certs.ts';

interface TlsProxy {
  proxy: Proxy;
  port: number;
  ca: TestCa;
  origin: string;
}

async function startTlsProxy(t: TestContext, extra: Partial<TlsListenerOptions> = {}): Promise<TlsProxy> {
  const ca = makeCa(t);
  const a = ca.write('a', ['a.test', 'b.test']);
  const store = new CertificateStore({ logger: silentLogger });
  await store.loadFiles([{ hosts: ['a.test', 'b.test'], certFile: a.certFile, keyFile: a.keyFile, isDefault: true }]);
  t.after(() => store.close());
  const { proxy } = await startProxy(t);
  const port = await listenTls(proxy, store, extra);
  return { proxy, port, ca, origin: `https://127.0.0.1:${port}` };
}

function connect(t: TestContext, p: TlsProxy, servername = 'a.test'): http2.ClientHttp2Session {
  const session = http2.connect(p.origin, { ca: p.ca.caPem, servername });
  session.on('error', () => undefined);
  t.after(() => session.destroy());
  return session;
}

interface H2Response {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
}

function h2Request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string | Buffer): Promise<H2Response> {
  return withTimeout(
    new Promise<H2Response>((resolve, reject) => {
      const req = session.request(headers, { endStream: body === undefined });
      let head: http2.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      req.on('response', (h) => (head = h));
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve({ status: Number(head[':status']), headers: head, body: Buffer.concat(chunks).toString() }));
      req.on('error', reject);
      if (body !== undefined) req.end(body);
    }),
    10_000,
    `h2 ${String(headers[':method'] ?? 'GET')} ${String(headers[':path'] ?? '/')}`,
  );
}

test('h2 requests reach the HTTP/1.1 instance with Host from :authority, X-Forwarded-Proto https, and their bodies', async (t) => {
  const seen: Array<{ method: string; url: string; headers: Record<string, unknown>; body: string; httpVersion: string }> = [];
  const up = await startServer(t, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString(), httpVersion: req.httpVersion });
      res.setHeader('set-cookie', ['a=1', 'b=2']);
      res.end(`ok ${req.method}`);
    });
  });
  const p = await startTlsProxy(t);
  p.proxy.apply({ services: [service('a', [target('u', up.port)], { hosts: ['a.test'] })] });
  const session = connect(t, p);
  const r = await h2Request(session, { ':method': 'GET', ':path': '/x?y=1', ':authority': 'A.test:443', cookie: ['c1=1', 'c2=2'] });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'ok GET');
  assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
  assert.equal(session.alpnProtocol, 'h2');
  const g = seen.shift()!;
  assert.equal(g.httpVersion, '1.1');
  assert.equal(g.url, '/x?y=1');
  assert.equal(g.headers.host, 'A.test:443');
  assert.equal(g.headers['x-forwarded-proto'], 'https');
  assert.equal(g.headers.cookie, 'c1=1; c2=2', 'h2 cookie fields are joined for HTTP/1.1');
  assert.ok(!Object.keys(g.headers).some((k) => k.startsWith(':')), 'no pseudo-header reaches the instance');

  // A body without content-length (streamed) and one with it.
  const streamed = await h2Request(session, { ':method': 'POST', ':path': '/up', ':authority': 'a.test' }, 'x'.repeat(100_000));
  assert.equal(streamed.body, 'ok POST');
  assert.equal(seen.shift()!.body.length, 100_000);
  await h2Request(session, { ':method': 'PUT', ':path': '/up', ':authority': 'a.test', 'content-length': '5' }, 'hello');
  assert.equal(seen.shift()!.body, 'hello');

  // Routing follows :authority: a name no service has gets baton's 404-style page, not service a.
  const other = await h2Request(session, { ':method': 'GET', ':path': '/', ':authority': 'b.test' });
  assert.notEqual(other.status, 200);
  assert.equal(seen.length, 0);
});

test('hop-by-hop fields from an instance never reach an h2 response', async (t) => {
  // A raw HTTP/1.1 instance that sends every connection-specific field there is.
  const raw = net.createServer((s) => {
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      buf = '';
      s.write(
        'HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n' +
          'Upgrade: h2c\r\nX-Secret: 1\r\nX-Kept: yes\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
      );
    });
    s.on('error', () => undefined);
  });
  const sockets = new Set<net.Socket>();
  raw.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => raw.close(() => resolve()));
  });
  const p = await startTlsProxy(t);
  p.proxy.apply({ services: [service('a', [target('u', (raw.address() as net.AddressInfo).port)], { isDefault: true })] });
  const session = connect(t, p);
  for (let i = 0; i < 3; i++) {
    const r = await h2Request(session, { ':method': 'GET', ':path': '/', ':authority': 'a.test' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'hello');
    assert.equal(r.headers['x-kept'], 'yes');
    for (const name of ['connection', 'keep-alive', 'proxy-connection', 'upgrade', 'transfer-encoding', 'x-secret']) {
      assert.equal(r.headers[name], undefined, `${name} reached the h2 client`);
    }
  }
});

test('limits are advertised (concurrent streams, header list size); an oversized header block never reaches the instance', async (t) => {
  let hits = 0;
  const up = await startServer(t, (_req, res) => {
    hits++;
    res.end('ok');
  });
  const p = await startTlsProxy(t, { maxConcurrentStreams: 7 });
  p.proxy.apply({ services: [service('a', [target('u', up.port)], { isDefault: true })] });
  const session = connect(t, p);
  await withTimeout(new Promise<void>((resolve) => session.once('remoteSettings', () => resolve())), 5000, 'the server SETTINGS');
  assert.equal(session.remoteSettings.maxConcurrentStreams, 7);
  assert.equal(session.remoteSettings.maxHeaderListSize, 16 * 1024);
  const big = await h2Request(session, { ':method': 'GET', ':path': '/', ':authority': 'a.test', 'x-big': 'y'.repeat(40 * 1024) }).then(
    (r) => r.status,
    (err: Error) => err.message,
  );
  assert.notEqual(big, 200, 'an oversized header block is refused');
  assert.equal(hits, 0);
  // A fresh session still works.
  const ok = await h2Request(connect(t, p), { ':method': 'GET', ':path': '/', ':authority': 'a.test' });
  assert.equal(ok.status, 200);
  assert.equal(hits, 1);
});

test('rapid reset: the abusive session is ended with GOAWAY; a concurrent client gets every answer', async (t) => {
  let started = 0;
  const up = await startServer(t, (_req, res) => {
    started++;
    setTimeout(() => res.end('ok'), 5);
  });
  const p = await startTlsProxy(t);
  p.proxy.apply({ services: [service('a', [target('u', up.port)], { isDefault: true })] });

  const attacker = connect(t, p);
  const goaway = new Promise<number>((resolve) => attacker.once('goaway', (code: number) => resolve(code)));
  const closed = new Promise<void>((resolve) => attacker.once('close', () => resolve()));
  let opened = 0;
  // Open a burst of streams, let their HEADERS go out, cancel them all; again, until the server ends the session (bounded).
  const attack = (async () => {
    for (let round = 0; round < 100 && !attacker.closed && !attacker.destroyed; round++) {
      const burst: http2.ClientHttp2Stream[] = [];
      try {
        for (let i = 0; i < 50; i++) {
          const s = attacker.request({ ':method': 'GET', ':path': '/', ':authority': 'a.test' });
          s.on('error', () => undefined);
          burst.push(s);
          opened++;
        }
      } catch {
        break; // the session is going away
      }
      await new Promise((r) => setTimeout(r, 1));
      for (const s of burst) s.close(http2.constants.NGHTTP2_CANCEL);
      await new Promise((r) => setTimeout(r, 1));
    }
  })();

  const normal = connect(t, p);
  let ok = 0;
  for (let i = 0; i < 100; i++) {
    const r = await h2Request(normal, { ':method': 'GET', ':path': `/n${i}`, ':authority': 'a.test' });
    if (r.status === 200 && r.body === 'ok') ok++;
  }
  await attack;
  const code = await withTimeout(goaway, 10_000, 'GOAWAY to the attacker');
  await withTimeout(closed, 10_000, 'the abusive session to close');
  // nghttp2's limiter ends the session with INTERNAL_ERROR (not a graceful NO_ERROR).
  assert.notEqual(code, http2.constants.NGHTTP2_NO_ERROR, 'the GOAWAY names an error');
  assert.equal(ok, 100, 'the normal client got every answer');
  assert.ok(opened > H2_RESET_BURST, `the attacker opened ${opened} streams`);
  // nghttp2's default burst is 1000: ending well before it shows baton's tighter bound at work.
  assert.ok(opened < 1000, `the session ended after ${opened} streams`);
  t.diagnostic(`attacker opened ${opened} streams before GOAWAY; ${started} reached the instance; normal client ${ok}/100`);
});

test('nghttp (nghttp2-client) speaks h2 through baton', async (t) => {
  const up = await startServer(t, (req, res) => res.end(`host=${req.headers.host}`));
  const p = await startTlsProxy(t);
  p.proxy.apply({ services: [service('a', [target('u', up.port)], { hosts: ['a.test'] })] });
  const out = await withTimeout(
    new Promise<string>((resolve, reject) => {
      execFile('nghttp', ['-v', '-H', ':authority: a.test', `https://127.0.0.1:${p.port}/hello`], { timeout: 10_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
    }),
    15_000,
    'nghttp',
  );
  assert.match(out, /negotiated protocol: h2/);
  assert.match(out, /:status: 200/);
  assert.match(out, /host=a\.test/);
});

test('h2load (nghttp2-client): 2000 requests over 4 connections × 10 streams, every one answered 200', async (t) => {
  let hits = 0;
  const up = await startServer(t, (_req, res) => {
    hits++;
    res.end('ok');
  });
  const p = await startTlsProxy(t);
  p.proxy.apply({ services: [service('a', [target('u', up.port)], { hosts: ['a.test'] })] });
  const out = await withTimeout(
    new Promise<string>((resolve, reject) => {
      execFile('h2load', ['-n', '2000', '-c', '4', '-m', '10', '-H', ':authority: a.test', `https://127.0.0.1:${p.port}/`], { timeout: 60_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
    }),
    70_000,
    'h2load',
  );
  assert.match(out, /Application protocol: h2/);
  assert.match(out, /requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout/);
  assert.match(out, /status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx/);
  assert.equal(hits, 2000);
  t.diagnostic(out.split('\n').find((l) => l.startsWith('finished in')) ?? '');
});

test('WebSockets work over HTTPS/1.1 on the h2-enabled listener', async (t) => {
  const app = await startApp(t);
  const p = await startTlsProxy(t);
  p.proxy.apply({ services: [service('a', [target('u', app.port)], { isDefault: true })] });
  const ws = new WebSocket(`wss://127.0.0.1:${p.port}/ws`, { ca: p.ca.caPem, servername: 'a.test', headers: { host: 'a.test' } } as ConstructorParameters<typeof WebSocket>[2]);
  t.after(() => ws.terminate());
  const messages: string[] = [];
  ws.on('message', (d) => messages.push(String(d)));
  await withTimeout(new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  }), 5000, 'the WebSocket to open');
  ws.send('ping over tls');
  await withTimeout(new Promise<void>((resolve) => {
    const check = (): void => {
      if (messages.length >= 2) resolve();
      else ws.once('message', check);
    };
    check();
  }), 5000, 'two messages');
  assert.deepEqual(messages, ['hello v1', 'ping over tls']);
});
