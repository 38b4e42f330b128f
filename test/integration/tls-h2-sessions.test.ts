// The HTTP/2 idle timeout, and its memory: a closed session is gone from the
// proxy's memory once it is closed,
// not only when the idle timeout would have fired (found by the listener
// fuzzing: each h2 connection kept ~7 KiB of the daemon's memory for the whole
// client idle timeout, 60 s by default, after it had closed). Node's
// session.setTimeout() timer outlives the session: Node's own clean-up calls
// setTimeout(0) only once the session is flagged destroyed, when it no longer
// does anything. Counted here with V8's own object count, in this process,
// which is where the proxy under test runs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import v8 from 'node:v8';
import { CertificateStore } from '../../src/tls/index.ts';
import { silentLogger } from '../../src/core/log.ts';
import { service, startProxy, startServer, target, withTimeout } from '../fixtures/proxy-harness.ts';
import { listenTls, makeCa } from '../fixtures/tls-certs.ts';

/** The class of server-side HTTP/2 sessions (Node does not export it), taken from a session of a server of our own. */
async function serverSessionClass(): Promise<new () => unknown> {
  const server = http2.createServer();
  const session = new Promise<http2.ServerHttp2Session>((resolve) => server.once('session', resolve));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
  const cls = (await withTimeout(session, 5000, 'a session of our own')).constructor as new () => unknown;
  client.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return cls;
}

/** A GET on `session`; its body. */
function get(session: http2.ClientHttp2Session, path: string): Promise<string> {
  return withTimeout(
    new Promise<string>((resolve, reject) => {
      const req = session.request({ ':path': path });
      let b = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (b += d));
      req.on('end', () => resolve(b));
      req.on('error', reject);
    }),
    10_000,
    `an h2 response to ${path}`,
  );
}

test('an idle HTTP/2 session gets GOAWAY after the client idle timeout; a request in progress is not idleness', async (t) => {
  const ca = makeCa(t);
  const files = ca.write('a', ['a.test']);
  const store = new CertificateStore({ logger: silentLogger });
  await store.loadFiles([{ hosts: ['a.test'], certFile: files.certFile, keyFile: files.keyFile, isDefault: true }]);
  t.after(() => store.close());
  // The slow answer takes three idle timeouts. The idle timer starts with the session, before the
  // client's first request: a second leaves a busy machine time to send it (at 300 ms a slow
  // handshake's aftermath could see GOAWAY before the request, and the test fail).
  const up = await startServer(t, (req, res) => (req.url === '/slow' ? setTimeout(() => res.end('slow'), 3000) : res.end('ok')));
  const { proxy } = await startProxy(t, { clientIdleTimeoutMs: 1000 });
  proxy.apply({ services: [service('s', [target('u', up.port)], { isDefault: true })] });
  const port = await listenTls(proxy, store);
  const session = http2.connect(`https://127.0.0.1:${port}`, { ca: ca.caPem, servername: 'a.test' });
  t.after(() => session.destroy());
  const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
  let away = false;
  void goaway.then(() => (away = true));
  assert.equal(await get(session, '/slow'), 'slow');
  assert.equal(away, false, 'no GOAWAY while the request was in progress');
  assert.equal(await withTimeout(goaway, 10_000, 'GOAWAY to the idle session'), http2.constants.NGHTTP2_NO_ERROR);
});

test('HTTP/2 sessions that closed, by the client\'s GOAWAY or by a dropped connection, are not kept until the idle timeout', async (t) => {
  const ServerSession = await serverSessionClass();
  const ca = makeCa(t);
  const files = ca.write('a', ['a.test']);
  const store = new CertificateStore({ logger: silentLogger });
  await store.loadFiles([{ hosts: ['a.test'], certFile: files.certFile, keyFile: files.keyFile, isDefault: true }]);
  t.after(() => store.close());
  const up = await startServer(t, (_req, res) => res.end('ok'));
  // An idle timeout far longer than the wait below: what remains after it is what the timeout would keep.
  const { proxy } = await startProxy(t, { clientIdleTimeoutMs: 120_000 });
  proxy.apply({ services: [service('s', [target('u', up.port)], { isDefault: true })] });
  const port = await listenTls(proxy, store);

  const n = 20;
  for (let i = 0; i < n; i++) {
    if (i % 2 === 0) {
      // A well-behaved client: one request, then GOAWAY.
      const session = http2.connect(`https://127.0.0.1:${port}`, { ca: ca.caPem, servername: 'a.test' });
      assert.equal(await get(session, '/'), 'ok');
      await new Promise<void>((resolve) => session.close(() => resolve()));
    } else {
      // A client that drops the connection after the preface.
      await withTimeout(
        new Promise<void>((resolve) => {
          const s = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca: ca.caPem, ALPNProtocols: ['h2'] }, () => {
            s.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00', 'latin1', () => s.destroy());
          });
          s.on('error', () => undefined);
          s.on('close', () => resolve());
        }),
        5000,
        'a dropped h2 connection',
      );
    }
  }
  // v8.queryObjects collects garbage before it counts (so not every few milliseconds).
  let live = v8.queryObjects(ServerSession, { format: 'count' });
  for (const deadline = Date.now() + 10_000; live > 0 && Date.now() < deadline; live = v8.queryObjects(ServerSession, { format: 'count' })) {
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.equal(live, 0, `${live} of ${n} closed HTTP/2 sessions still in memory 10 s after they closed (idle timeout 120 s)`);
});
