// TLS termination with real TLS clients: SNI picks the certificate, replaced
// files are served to new connections while open ones go on, a broken
// replacement keeps the old certificate, X-Forwarded-Proto is https, HSTS and
// the redirect from plain HTTP.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import tls from 'node:tls';
import { writeFileSync, renameSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { CertificateStore } from '../../src/tls/index.ts';
import type { CertificateFiles } from '../../src/config/types.ts';
import { silentLogger, type Logger } from '../../src/core/log.ts';
import { request, service, startProxy, startServer, target, waitUntil, withTimeout } from '../fixtures/proxy-harness.ts';
import { listenTls, makeCa, recordingLogger, type TestCa } from '../fixtures/tls-certs.ts';

async function certStore(t: TestContext, files: CertificateFiles[], logger: Logger = silentLogger): Promise<CertificateStore> {
  const store = new CertificateStore({ logger, debounceMs: 50, pollMs: 200 });
  await store.loadFiles(files);
  store.watch();
  t.after(() => store.close());
  return store;
}

/** The serial of the certificate a TLS handshake with `servername` gets (verified against the test CA). */
function servedSerial(port: number, ca: TestCa, servername: string | undefined): Promise<string> {
  return withTimeout(
    new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca: ca.caPem, ...(servername ? { servername } : {}), checkServerIdentity: () => undefined, ALPNProtocols: ['http/1.1'] }, () => {
        const serial = s.getPeerX509Certificate()!.serialNumber;
        s.end();
        resolve(serial);
      });
      s.on('error', reject);
    }),
    5000,
    `a TLS handshake for ${servername ?? '(no SNI)'}`,
  );
}

interface HttpsResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  serial: string;
  protocol: string;
  localPort: number;
  rawHeaders: string[];
}

function httpsGet(port: number, ca: TestCa, servername: string, opts: { path?: string; agent?: https.Agent | false } = {}): Promise<HttpsResult> {
  return withTimeout(
    new Promise<HttpsResult>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, servername, path: opts.path ?? '/', ca: ca.caPem, agent: opts.agent ?? false, headers: { host: servername } }, (res) => {
        const chunks: Buffer[] = [];
        const socket = res.socket as tls.TLSSocket;
        // Node keeps the peer certificate of a handshake only until the first response on the socket.
        const serial = socket.getPeerX509Certificate()?.serialNumber ?? '(not kept)';
        const protocol = socket.getProtocol() ?? '';
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString(), serial, protocol, localPort: socket.localPort ?? 0, rawHeaders: res.rawHeaders }));
      });
      req.on('error', reject);
      req.end();
    }),
    5000,
    `GET https://${servername}${opts.path ?? '/'}`,
  );
}

async function echoUpstream(t: TestContext): Promise<number> {
  const up = await startServer(t, (req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ host: req.headers.host, proto: req.headers['x-forwarded-proto'], url: req.url }));
  });
  return up.port;
}

test('SNI picks the certificate of the name; no SNI or an unknown name gets the default; TLS 1.2+', async (t) => {
  const ca = makeCa(t);
  const a = ca.write('a', ['a.test', 'www.a.test']);
  const b = ca.write('b', ['b.test']);
  const w = ca.write('w', ['*.w.test']);
  const store = await certStore(t, [
    { hosts: ['a.test', 'www.a.test'], certFile: a.certFile, keyFile: a.keyFile, isDefault: false },
    { hosts: ['b.test'], certFile: b.certFile, keyFile: b.keyFile, isDefault: true },
    { hosts: ['*.w.test'], certFile: w.certFile, keyFile: w.keyFile, isDefault: false },
  ]);
  const { proxy } = await startProxy(t);
  const port = await listenTls(proxy, store);
  assert.equal(await servedSerial(port, ca, 'a.test'), a.serial);
  assert.equal(await servedSerial(port, ca, 'WWW.A.TEST'), a.serial);
  assert.equal(await servedSerial(port, ca, 'b.test'), b.serial);
  assert.equal(await servedSerial(port, ca, 'x.w.test'), w.serial);
  assert.equal(await servedSerial(port, ca, 'unknown.test'), b.serial, 'an unknown name gets the default');
  assert.equal(await servedSerial(port, ca, undefined), b.serial, 'no SNI gets the default');
  // An old protocol is refused.
  await assert.rejects(
    new Promise<void>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca: ca.caPem, maxVersion: 'TLSv1.1', minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' }, () => {
        s.end();
        resolve();
      });
      s.on('error', reject);
    }),
  );
});

test('HTTPS requests reach the instance with X-Forwarded-Proto https and their Host; HSTS when asked', async (t) => {
  const ca = makeCa(t);
  const a = ca.write('a', ['a.test']);
  const store = await certStore(t, [{ hosts: ['a.test'], certFile: a.certFile, keyFile: a.keyFile, isDefault: true }]);
  const upPort = await echoUpstream(t);
  const { proxy, port: plainPort } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('u', upPort)], { hosts: ['a.test'] })] });
  const port = await listenTls(proxy, store, { hsts: true });
  const r = await httpsGet(port, ca, 'a.test', { path: '/p?q=1' });
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body), { host: 'a.test', proto: 'https', url: '/p?q=1' });
  assert.equal(r.headers['strict-transport-security'], 'max-age=31536000');
  assert.equal(r.serial, a.serial);
  // Written by baton's own HTTP/1.1 path (src/proxy/h1/: lowercase field names; node:http writes "Connection").
  assert.ok(r.rawHeaders.includes('connection'), JSON.stringify(r.rawHeaders));
  // Plain HTTP stays plain (no HSTS there, X-Forwarded-Proto http).
  const p = await request(plainPort, { headers: { host: 'a.test' } });
  assert.equal(JSON.parse(p.body).proto, 'http');
  assert.equal(p.headers['strict-transport-security'], undefined);
});

test('with http2 off the listener speaks HTTPS/1.1 only (ALPN never picks h2)', async (t) => {
  const ca = makeCa(t);
  const a = ca.write('a', ['a.test']);
  const store = await certStore(t, [{ hosts: ['a.test'], certFile: a.certFile, keyFile: a.keyFile, isDefault: true }]);
  const upPort = await echoUpstream(t);
  const { proxy } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('u', upPort)], { isDefault: true })] });
  const port = await listenTls(proxy, store, { http2: false, hsts: true });
  const alpn = await withTimeout(
    new Promise<string | false>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca: ca.caPem, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
        const p = s.alpnProtocol ?? false;
        s.end();
        resolve(p);
      });
      s.on('error', reject);
    }),
    5000,
    'a TLS handshake offering h2',
  );
  assert.notEqual(alpn, 'h2');
  const r = await httpsGet(port, ca, 'a.test', { path: '/one' });
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).proto, 'https');
  assert.equal(r.headers['strict-transport-security'], 'max-age=31536000');
});

test('plain HTTP is redirected to HTTPS (308, path kept); /_baton/health and unknown ACME tokens are not', async (t) => {
  const { proxy, port } = await startProxy(t);
  const upPort = await echoUpstream(t);
  proxy.apply({ services: [service('s', [target('u', upPort)], { isDefault: true })] });
  proxy.setPlainFront({ redirectPort: 8443, challenge: (token) => (token === 'known' ? 'known.thumbprint' : undefined) });
  const r = await request(port, { path: '/a/b?c=d', headers: { host: 'Shop.Example.com:8080' } });
  assert.equal(r.status, 308);
  assert.equal(r.headers.location, 'https://shop.example.com:8443/a/b?c=d');
  const h = await request(port, { path: '/_baton/health', headers: { host: 'shop.example.com' } });
  assert.equal(h.status, 200);
  const c = await request(port, { path: '/.well-known/acme-challenge/known', headers: { host: 'shop.example.com' } });
  assert.equal(c.status, 200);
  assert.equal(c.body, 'known.thumbprint');
  const other = await request(port, { path: '/.well-known/acme-challenge/other', headers: { host: 'shop.example.com' } });
  assert.equal(JSON.parse(other.body).url, '/.well-known/acme-challenge/other', 'a token baton does not hold goes to the app');
  proxy.setPlainFront({ redirectPort: 443, challenge: null });
  const r443 = await request(port, { path: '/', headers: { host: 'shop.example.com' } });
  assert.equal(r443.headers.location, 'https://shop.example.com/');
});

test('a replaced certificate is served to new connections; an open connection goes on; a broken replacement keeps the old one', async (t) => {
  const ca = makeCa(t);
  const a = ca.write('a', ['a.test']);
  const { logger, lines } = recordingLogger();
  const store = await certStore(t, [{ hosts: ['a.test'], certFile: a.certFile, keyFile: a.keyFile, isDefault: true }], logger);
  const upPort = await echoUpstream(t);
  const { proxy } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('u', upPort)], { isDefault: true })] });
  const port = await listenTls(proxy, store);
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const first = await httpsGet(port, ca, 'a.test', { agent });
  assert.equal(first.serial, a.serial);

  // Replace both files the way a deploy tool does: write aside, rename over.
  const next = ca.issue(['a.test']);
  writeFileSync(`${a.keyFile}.new`, next.key);
  writeFileSync(`${a.certFile}.new`, next.cert);
  renameSync(`${a.keyFile}.new`, a.keyFile);
  renameSync(`${a.certFile}.new`, a.certFile);
  await waitUntil(() => store.certificateFor('a.test')?.serialNumber === next.serial, 5000, 'the store to load the new certificate');
  assert.equal(await servedSerial(port, ca, 'a.test'), next.serial, 'a new connection gets the new certificate');
  assert.equal(await servedSerial(port, ca, undefined), next.serial, 'the default (no SNI) is the new one too');
  const again = await httpsGet(port, ca, 'a.test', { agent });
  assert.equal(again.status, 200);
  assert.equal(again.localPort, first.localPort, 'the kept-alive connection goes on (same socket, its old handshake)');

  // A key that does not match the certificate: logged, the previous pair stays.
  const other = ca.issue(['a.test']);
  writeFileSync(a.certFile, other.cert);
  await waitUntil(() => lines.some((l) => l.level === 'error' && String(l.msg).includes('could not be loaded')), 5000, 'the error about the broken pair');
  assert.equal(await servedSerial(port, ca, 'a.test'), next.serial);
  const errorLine = lines.find((l) => l.level === 'error')!;
  assert.ok(!JSON.stringify(errorLine).includes('PRIVATE KEY'), 'no key material in the log');
  // Completing the pair is picked up.
  writeFileSync(a.keyFile, other.key);
  await waitUntil(() => store.certificateFor('a.test')?.serialNumber === other.serial, 5000, 'the completed pair to load');
  assert.equal(await servedSerial(port, ca, 'a.test'), other.serial);
  assert.equal(new X509Certificate(other.cert).serialNumber, other.serial);
});

test('a certificate file that cannot be used at start is an error naming it', async (t) => {
  const ca = makeCa(t);
  const a = ca.write('a', ['a.test']);
  const b = ca.write('b', ['b.test']);
  const store = new CertificateStore({ logger: silentLogger });
  t.after(() => store.close());
  await assert.rejects(store.loadFiles([{ hosts: ['a.test'], certFile: a.certFile, keyFile: b.keyFile, isDefault: true }]), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'TLS_CERT_INVALID');
    assert.ok(err.message.includes(a.certFile), err.message);
    return true;
  });
  await assert.rejects(store.loadFiles([{ hosts: ['a.test'], certFile: `${a.certFile}.missing`, keyFile: a.keyFile, isDefault: true }]), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'TLS_CERT_UNREADABLE');
    assert.ok(err.message.includes('.missing'), err.message);
    return true;
  });
});
