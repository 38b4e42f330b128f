// ACME against a real ACME server (pebble): baton obtains a certificate with
// HTTP-01 answered by its own plain listener (pebble validates for real),
// serves it at once, keeps it in the state directory (0600), serves the kept
// one after a restart, renews it inside the renew-before window, and retries
// with a growing delay when the directory cannot be reached.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import tls from 'node:tls';
import { mkdtempSync, rmSync, statSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CertificateStore } from '../../src/tls/index.ts';
import { AcmeManager } from '../../src/tls/acme.ts';
import type { AcmeConfig } from '../../src/config/types.ts';
import { closedPort, service, startProxy, startServer, target, withTimeout } from '../fixtures/proxy-harness.ts';
import { listenTls, makeCa, recordingLogger } from '../fixtures/tls-certs.ts';
import { startPebble } from '../fixtures/pebble.ts';
import { createDaemon, serviceYaml, waitUntil } from '../helpers/daemon.ts';
import { settlesWithin } from '../helpers/timeouts.ts';
import { startWithTls } from '../helpers/tls-daemon.ts';

const YEAR_MS = 365 * 86_400_000;

async function waitFor(m: AcmeManager, what: string, pred: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}; state: ${JSON.stringify(m.state())}`);
    await settlesWithin(m.changed(), Math.min(left, 500));
  }
}

function httpsGet(port: number, servername: string, ca: string): Promise<{ status: number; body: string; serial: string }> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port, servername, ca, agent: false, headers: { host: servername } }, (res) => {
        const serial = (res.socket as tls.TLSSocket).getPeerX509Certificate()!.serialNumber;
        let body = '';
        res.on('data', (d: Buffer) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body, serial }));
      });
      req.on('error', reject);
    }),
    5000,
    `GET https://${servername}/`,
  );
}

function stateDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'baton-acme-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('a certificate is obtained from pebble with HTTP-01 on baton\'s listener, served, kept, reloaded and renewed', async (t) => {
  const ca = makeCa(t);
  const up = await startServer(t, (_req, res) => res.end('app'));
  const { proxy, port: plainPort } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('u', up.port)], { isDefault: true })] });
  const pebble = await startPebble(t, ca, plainPort);
  const dir = stateDir(t);
  const config: AcmeConfig = { hosts: ['localhost'], email: 'ops@example.com', directoryUrl: pebble.directoryUrl, caFile: ca.caFile, renewBeforeMs: null, challenge: 'http-01' };

  const store = new CertificateStore({ logger: recordingLogger().logger });
  t.after(() => store.close());
  const { logger, lines } = recordingLogger();
  const first = new AcmeManager({ config, stateDir: dir, certificates: store, logger, retryMinMs: 200 });
  t.after(() => first.stop());
  let answered = 0;
  proxy.setPlainFront({
    redirectPort: null,
    challenge: (token) => {
      const a = first.challengeResponse(token);
      if (a !== undefined) answered++;
      return a;
    },
  });
  const tlsPort = await listenTls(proxy, store);
  first.start();
  await waitFor(first, 'the first certificate', () => first.state().issued === 1);

  assert.ok(answered >= 1, 'pebble fetched the HTTP-01 answer from baton\'s plain listener');
  const root = await pebble.rootPem();
  const r = await httpsGet(tlsPort, 'localhost', root);
  assert.equal(r.status, 200);
  assert.equal(r.body, 'app');
  const issuedSerial = r.serial;
  const s = first.state();
  assert.ok(s.notAfter !== null && s.renewAt !== null && s.renewAt < s.notAfter);
  // Default window: min(30 days, a third of the lifetime) before expiry.
  assert.equal(s.notAfter.getTime() - s.renewAt.getTime(), 30 * 86_400_000);
  for (const f of ['account.key', 'localhost/key.pem', 'localhost/cert.pem']) {
    assert.equal(statSync(path.join(dir, 'acme', f)).mode & 0o777, 0o600, `${f} is 0600`);
  }
  assert.equal(statSync(path.join(dir, 'acme')).mode & 0o777, 0o700);
  const keyPem = readFileSync(path.join(dir, 'acme', 'localhost', 'key.pem'), 'utf8');
  const keyBody = keyPem.split('\n')[1]!;
  assert.ok(!lines.some((l) => JSON.stringify(l).includes(keyBody)), 'the key never appears in the log');
  assert.ok(lines.some((l) => l.msg === 'acme: certificate issued'));
  await first.stop();

  // A restarted daemon serves the kept certificate; with a renew-before window longer than the
  // lifetime (pebble issues for 5 years) the check renews it, and new connections get the new one.
  const accountKey = readFileSync(path.join(dir, 'acme', 'account.key'), 'utf8');
  const store2 = new CertificateStore({ logger: recordingLogger().logger });
  t.after(() => store2.close());
  const second = new AcmeManager({ config: { ...config, renewBeforeMs: 10 * YEAR_MS }, stateDir: dir, certificates: store2, logger, checkIntervalMs: 60_000, retryMinMs: 200 });
  t.after(() => second.stop());
  await second.loadStored();
  assert.equal(store2.certificateFor('localhost')?.serialNumber, issuedSerial, 'the kept certificate is served after a restart');
  proxy.setPlainFront({ redirectPort: null, challenge: (token) => second.challengeResponse(token) });
  const tlsPort2 = await listenTls(proxy, store2);
  assert.equal((await httpsGet(tlsPort2, 'localhost', root)).serial, issuedSerial);
  second.start();
  await waitFor(second, 'the renewal', () => second.state().issued === 1);
  const renewed = await httpsGet(tlsPort2, 'localhost', root);
  assert.notEqual(renewed.serial, issuedSerial, 'the renewed certificate is served');
  assert.equal(renewed.status, 200);
  assert.equal(readFileSync(path.join(dir, 'acme', 'account.key'), 'utf8'), accountKey, 'the account key is reused');
  t.diagnostic(`issued ${issuedSerial}, renewed ${renewed.serial}; pebble log lines: ${pebble.log().split('\n').length}`);
});

test('a daemon with tls.acme in its config obtains a certificate from pebble and serves it', async (t) => {
  const ca = makeCa(t);
  const d = await createDaemon({ start: false });
  t.after(() => d.cleanup());
  const pebble = await startPebble(t, ca, d.port);
  // The daemon binds the TLS port itself: another one if it was taken meanwhile.
  const tlsPort = await startWithTls(d, {
    top: ['log_level: debug'],
    tls: ['  acme:', '    hosts: [localhost]', `    directory: ${JSON.stringify(pebble.directoryUrl)}`, `    ca_file: ${JSON.stringify(ca.caFile)}`, '  redirect_http: true'],
    services: serviceYaml({ instances: 1 }),
  });
  const dep = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(dep.code, 0, dep.stdout + dep.stderr);
  await waitUntil('the daemon to log the issued certificate', async () => /acme: certificate issued/.test(await d.daemonLog()), 30_000, 100);
  const r = await httpsGet(tlsPort, 'localhost', await pebble.rootPem());
  assert.equal(r.status, 200);
  assert.equal(r.body.trim(), 'v1');
  const log = await d.daemonLog();
  const key = readFileSync(path.join(d.dir, 'state', 'acme', 'localhost', 'key.pem'), 'utf8').split('\n')[1]!;
  assert.ok(!log.includes(key), 'the key never appears in the daemon log');
  const st = await d.status();
  assert.equal(st.tls.certificates[0].source, 'acme');
  assert.deepEqual(st.tls.acme.hosts, ['localhost']);
  assert.equal(st.tls.acme.failures, 0);
  assert.ok(Date.parse(st.tls.acme.renewAt) < Date.parse(st.tls.acme.notAfter));
  assert.ok(!JSON.stringify(st).includes(key), 'nor in status');
});

test('an unreachable directory is retried with a growing delay, logged without secrets', async (t) => {
  const dir = stateDir(t);
  const store = new CertificateStore({ logger: recordingLogger().logger });
  t.after(() => store.close());
  const { logger, lines } = recordingLogger();
  const port = await closedPort(t);
  const m = new AcmeManager({
    config: { hosts: ['shop.example.com'], email: null, directoryUrl: `https://127.0.0.1:${port}/dir`, caFile: null, renewBeforeMs: null, challenge: 'http-01' },
    stateDir: dir,
    certificates: store,
    logger,
    retryMinMs: 50,
    retryMaxMs: 150,
  });
  t.after(() => m.stop());
  m.start();
  await waitFor(m, 'three failures', () => m.state().failures >= 3, 60_000);
  await m.stop();
  const failures = lines.filter((l) => l.msg === 'acme: obtaining a certificate failed; will retry');
  assert.ok(failures.length >= 3);
  assert.deepEqual(failures.slice(0, 3).map((l) => l.retryInMs), [50, 100, 150], 'the delay doubles up to the maximum');
  assert.match(String(failures[0]!.error), /127\.0\.0\.1/);
  assert.equal(store.certificateFor('shop.example.com'), null);
  const account = readFileSync(path.join(dir, 'acme', 'account.key'), 'utf8').split('\n')[1]!;
  assert.ok(!lines.some((l) => JSON.stringify(l).includes(account)), 'the account key never appears in the log');
});
