// A real daemon with `tls:` in its config: HTTPS (HTTP/1.1 and HTTP/2) load
// through a deploy and through a certificate replacement, 0 failed requests;
// plain HTTP redirected; the daemon refuses to start on an unusable certificate.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { renameSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createDaemon, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad, type LoadResult } from '../helpers/load.ts';
import { certificateLine, startWithTls } from '../helpers/tls-daemon.ts';
import { makeCa, type TestCa } from '../fixtures/tls-certs.ts';

let d: TestDaemon;
let ca: TestCa;
let tlsPort: number;
let files: { certFile: string; keyFile: string; serial: string };
const cleanups: Array<() => void> = [];

before(async () => {
  ca = makeCa({ after: (fn) => cleanups.push(fn) });
  files = ca.write('site', ['site.test', 'www.site.test']);
  d = await createDaemon({ start: false });
  // The daemon binds the TLS port itself: another one if it was taken meanwhile.
  tlsPort = await startWithTls(d, {
    top: ['log_level: debug'],
    tls: ['  certificates:', certificateLine(['site.test', 'www.site.test'], files), '  redirect_http: true', '  hsts: true'],
    services: serviceYaml({ extra: 'hosts: [site.test, www.site.test]' }),
  });
});
after(async () => {
  await d?.cleanup();
  for (const c of cleanups) c();
});

function assertClean(r: LoadResult, label: string): void {
  assert.equal(r.failed, 0, `${label}: ${r.failed} of ${r.total} requests failed: ${r.errors.join('; ')}`);
  assert.ok(r.total > 50, `${label}: only ${r.total} requests ran`);
}

function serialOf(servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: tlsPort, servername, ca: ca.caPem }, () => {
      const serial = s.getPeerX509Certificate()!.serialNumber;
      s.end();
      resolve(serial);
    });
    s.on('error', reject);
  });
}

test('HTTPS serves the first deploy; plain HTTP redirects to it', async () => {
  const r = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const got = await new Promise<{ status: number; body: string; hsts: unknown; proto: string }>((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port: tlsPort, servername: 'site.test', ca: ca.caPem, headers: { host: 'site.test' }, agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body, hsts: res.headers['strict-transport-security'], proto: (res.socket as tls.TLSSocket).getProtocol() ?? '' }));
      })
      .on('error', reject);
  });
  assert.equal(got.status, 200);
  assert.equal(got.body.trim(), 'v1');
  assert.equal(got.hsts, 'max-age=31536000');
  const plain = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: d.port, path: '/path?x=1', headers: { host: 'site.test' }, agent: false }, (res) => {
      res.resume();
      resolve(res);
    }).on('error', reject);
  });
  assert.equal(plain.statusCode, 308);
  assert.equal(plain.headers.location, `https://site.test:${tlsPort}/path?x=1`);
  assert.equal(await serialOf('site.test'), files.serial);
  const st = await d.status();
  assert.deepEqual(st.tls.listeners, [`127.0.0.1:${tlsPort}`]);
  assert.equal(st.tls.certificates.length, 1);
  assert.deepEqual(st.tls.certificates[0].hosts, ['site.test', 'www.site.test']);
  assert.equal(st.tls.certificates[0].file, files.certFile);
  assert.ok(Date.parse(st.tls.certificates[0].notAfter) > Date.now());
  assert.equal(st.tls.acme, null);
  const human = await d.cli(['status']);
  assert.match(human.stdout, new RegExp(`https on 127\\.0\\.0\\.1:${tlsPort} \\(HTTP/2 and HTTP/1\\.1\\)`));
  assert.match(human.stdout, /certificate site\.test, www\.site\.test \(default\): .*site\.pem, valid until /);
});

test('a deploy under HTTPS load, HTTP/1.1 and HTTP/2 clients: 0 failed, both versions seen', async () => {
  const v2 = await d.release('v2');
  const url = `https://127.0.0.1:${tlsPort}/`;
  const h1 = startLoad({ url, concurrency: 3, maxMs: 60_000, tls: { ca: ca.caPem, servername: 'site.test' }, headers: { host: 'site.test' } });
  const h2 = startLoad({ url, concurrency: 2, maxMs: 60_000, tls: { ca: ca.caPem, servername: 'site.test' }, http2: true, headers: { host: 'site.test' } });
  await h1.waitFor(100, 15_000);
  await h2.waitFor(100, 15_000);
  const r = await d.cli(['deploy', 'web', v2]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const [n1, n2] = [h1.snapshot().total, h2.snapshot().total];
  await h1.waitFor(n1 + 100, 15_000);
  await h1.waitForEach(2, 15_000);
  await h2.waitFor(n2 + 100, 15_000);
  await h2.waitForEach(2, 15_000);
  const [r1, r2] = [await h1.stop(), await h2.stop()];
  assertClean(r1, 'HTTPS/1.1 load');
  assertClean(r2, 'HTTP/2 load');
  for (const res of [r1, r2]) {
    assert.deepEqual(Object.keys(res.bodies).sort(), ['v1', 'v2'], JSON.stringify(res.bodies));
    for (const seq of res.sequences) assert.equal(seq.at(-1), 'v2');
  }
});

test('certificate files replaced under HTTPS load: 0 failed, new connections get the new certificate', async () => {
  const url = `https://127.0.0.1:${tlsPort}/`;
  // New connection per request for half the clients, so handshakes happen throughout the swap.
  const fresh = startLoad({ url, concurrency: 2, keepAlive: false, maxMs: 60_000, tls: { ca: ca.caPem, servername: 'site.test' }, headers: { host: 'site.test' } });
  const kept = startLoad({ url, concurrency: 2, maxMs: 60_000, tls: { ca: ca.caPem, servername: 'www.site.test' }, http2: true, headers: { host: 'www.site.test' } });
  await fresh.waitFor(30, 15_000);
  await kept.waitFor(30, 15_000);
  const next = ca.issue(['site.test', 'www.site.test']);
  writeFileSync(`${files.keyFile}.new`, next.key);
  writeFileSync(`${files.certFile}.new`, next.cert);
  renameSync(`${files.keyFile}.new`, files.keyFile);
  renameSync(`${files.certFile}.new`, files.certFile);
  await waitUntil('the daemon to serve the new certificate', async () => (await serialOf('site.test')) === next.serial, 15_000, 100);
  const [a, b] = [fresh.snapshot().total, kept.snapshot().total];
  await fresh.waitFor(a + 30, 15_000);
  await kept.waitFor(b + 30, 15_000);
  const [rf, rk] = [await fresh.stop(), await kept.stop()];
  assert.equal(rf.failed + rk.failed, 0, `${rf.errors.join('; ')} ${rk.errors.join('; ')}`);
  assert.ok(rf.total > 50 && rk.total > 50, `${rf.total} / ${rk.total} requests`);
  assert.equal(await serialOf('www.site.test'), next.serial);
  assert.match(await d.daemonLog(), /tls: certificate reloaded/);
});

test('a daemon whose certificate cannot be used refuses to start, naming the file', async () => {
  const other = await createDaemon({ start: false });
  after(() => other.cleanup());
  const wrong = ca.write('wrong', ['site.test']);
  const port = await other.holdPort('tls');
  await writeFile(
    other.configFile,
    [
      `listen: ["127.0.0.1:${other.port}"]`,
      'state_dir: ./state',
      'tls:',
      `  listen: ["127.0.0.1:${port}"]`,
      '  certificates:',
      `    - { hosts: [site.test], cert: ${JSON.stringify(wrong.certFile)}, key: ${JSON.stringify(files.keyFile)} }`,
      'services:',
      serviceYaml(),
      '',
    ].join('\n'),
  );
  await assert.rejects(other.start(), (err: Error) => {
    assert.match(err.message, /exited during start-up/);
    assert.ok(err.message.includes(wrong.certFile), err.message);
    return true;
  });
});
