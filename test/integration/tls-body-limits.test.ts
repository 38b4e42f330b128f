// A service's body limit over HTTPS: HTTP/2 streams (a declared length, and a
// body without one that passes the limit mid-stream) and HTTP/1.1 over TLS
// with Expect: 100-continue. The instance counts what it receives.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import tls from 'node:tls';
import { CertificateStore } from '../../src/tls/index.ts';
import { silentLogger } from '../../src/core/log.ts';
import { service, startProxy, startServer, target, waitUntil, withTimeout } from '../fixtures/proxy-harness.ts';
import { listenTls, makeCa, type TestCa } from '../fixtures/tls-certs.ts';

interface Received {
  bytes: number;
  complete: boolean | null;
}

async function setup(t: TestContext, max: number): Promise<{ port: number; ca: TestCa; bodies: Received[] }> {
  const bodies: Received[] = [];
  const up = await startServer(t, (req, res) => {
    const b: Received = { bytes: 0, complete: null };
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
  const ca = makeCa(t);
  const a = ca.write('a', ['a.test']);
  const store = new CertificateStore({ logger: silentLogger });
  await store.loadFiles([{ hosts: ['a.test'], certFile: a.certFile, keyFile: a.keyFile, isDefault: true }]);
  t.after(() => store.close());
  const { proxy } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('u', up.port)], { isDefault: true, limits: { maxBodyBytes: max, maxInflight: null, maxQueued: 0, queueTimeoutMs: 1000 } })] });
  return { port: await listenTls(proxy, store), ca, bodies };
}

function session(t: TestContext, port: number, ca: TestCa): http2.ClientHttp2Session {
  const s = http2.connect(`https://127.0.0.1:${port}`, { ca: ca.caPem, servername: 'a.test' });
  s.on('error', () => undefined);
  t.after(() => s.destroy());
  return s;
}

/** One h2 request; `send` writes the body (and ends it). Resolves with the status, x-baton-error and body. */
function h2(s: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, send: (req: http2.ClientHttp2Stream) => void): Promise<{ status: number; error: string | undefined; body: string }> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const req = s.request({ ':method': 'POST', ':path': '/upload', ...headers });
      let head: http2.IncomingHttpHeaders = {};
      let body = '';
      req.on('response', (h) => (head = h));
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('close', () => (head[':status'] === undefined ? reject(new Error(`stream closed without a response (code ${req.rstCode})`)) : resolve({ status: Number(head[':status']), error: head['x-baton-error'] as string | undefined, body })));
      req.on('error', () => undefined);
      send(req);
    }),
    10_000,
    'an h2 answer',
  );
}

test('HTTP/2: a declared length over the limit gets 413 before the body; one without a declared length is cut at the limit; the session lives on', async (t) => {
  const { port, ca, bodies } = await setup(t, 1000);
  const s = session(t, port, ca);
  const declared = await h2(s, { 'content-length': '5000' }, (req) => req.end(Buffer.alloc(5000, 97)));
  assert.deepEqual([declared.status, declared.error], [413, 'body_too_large']);
  assert.equal(bodies.length, 0, 'the instance saw nothing of it');

  // Without content-length: the first 600 bytes reach the instance, then the rest passes the limit.
  const streamed = h2(s, {}, (req) => {
    req.write(Buffer.alloc(600, 98));
    void waitUntil(() => bodies[0]?.bytes === 600, 5000, 'the first 600 bytes to reach the instance').then(() => req.end(Buffer.alloc(1200, 99)), () => req.destroy());
  });
  const r = await streamed;
  assert.deepEqual([r.status, r.error], [413, 'body_too_large']);
  await waitUntil(() => bodies[0]?.complete === false, 5000, 'the instance to see its request aborted');
  assert.ok(bodies[0]!.bytes <= 1000, `the instance got ${bodies[0]!.bytes} bytes`);
  // The same session goes on.
  const ok = await h2(s, {}, (req) => req.end(Buffer.alloc(1000, 100)));
  assert.deepEqual([ok.status, ok.body], [200, 'got 1000']);
});

test('HTTP/1.1 over TLS: Expect: 100-continue with a body over the limit gets 413 and no 100', async (t) => {
  const { port, ca, bodies } = await setup(t, 1000);
  const got = await withTimeout(
    new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca: ca.caPem, servername: 'a.test', ALPNProtocols: ['http/1.1'] }, () => {
        s.write('POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n');
      });
      t.after(() => s.destroy());
      let text = '';
      s.on('data', (d: Buffer) => (text += d.toString('latin1')));
      s.on('close', () => resolve(text));
      s.on('error', reject);
    }),
    10_000,
    'the 413 over TLS',
  );
  assert.match(got, /^HTTP\/1\.1 413 /);
  assert.doesNotMatch(got, /100 Continue/);
  assert.match(got, /\r\nx-baton-error: body_too_large\r\n/);
  assert.equal(bodies.length, 0);
});

test('HTTP/2: streams count against the in-flight cap and wait in its queue; finished streams free their slots', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let arrived = 0;
  const up = await startServer(t, (_req, res) => {
    arrived++;
    void gate.then(() => res.end('done'));
  });
  const ca = makeCa(t);
  const a = ca.write('a', ['a.test']);
  const store = new CertificateStore({ logger: silentLogger });
  await store.loadFiles([{ hosts: ['a.test'], certFile: a.certFile, keyFile: a.keyFile, isDefault: true }]);
  t.after(() => store.close());
  const { proxy } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('u', up.port)], { isDefault: true, limits: { maxBodyBytes: null, maxInflight: 1, maxQueued: 1, queueTimeoutMs: 30_000 } })] });
  const s = session(t, await listenTls(proxy, store), ca);
  const get = (): Promise<{ status: number; error: string | undefined; body: string }> => h2(s, { ':method': 'GET', ':path': '/' }, (req) => req.end());
  const first = get();
  await waitUntil(() => arrived === 1, 10_000, 'the first stream to be in flight');
  const second = get();
  await waitUntil(() => proxy.routingCounters('s').queuedNow === 1, 10_000, 'the second stream to wait');
  const shed = await get();
  assert.deepEqual([shed.status, shed.error], [503, 'at_capacity']);
  release();
  assert.equal((await first).body, 'done');
  assert.equal((await second).body, 'done', 'the waiting stream went on once the first finished');
  // Admitted at once or after a short wait for the last slot to be given back: never shed.
  assert.equal((await get()).status, 200);
  assert.equal(arrived, 3);
  assert.equal(proxy.routingCounters('s').shed, 1);
});
