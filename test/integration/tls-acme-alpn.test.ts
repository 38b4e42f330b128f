// ACME's TLS-ALPN-01 (RFC 8737) on baton's TLS listener: pebble validates
// for real against baton's TLS port (its HTTP-01 port has nothing listening,
// as on a host whose port 80 is closed), and baton serves the certificate it
// obtained. The listener's rules, each with a real client: the challenge
// certificate goes only to acme-tls/1 for a name with a pending challenge;
// everyone else gets the usual certificate and h2/http/1.1.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import https from 'node:https';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as acme from 'acme-client';
import { CertificateStore } from '../../src/tls/index.ts';
import { AcmeManager } from '../../src/tls/acme.ts';
import { ACME_TLS_ALPN, type AcmeTlsAlpnResponder } from '../../src/proxy/listeners.ts';
import type { AcmeConfig } from '../../src/config/types.ts';
import { silentLogger } from '../../src/core/log.ts';
import { closedPort, service, startProxy, startServer, target, withTimeout } from '../fixtures/proxy-harness.ts';
import { listenTls, makeCa, recordingLogger } from '../fixtures/tls-certs.ts';
import { startPebble } from '../fixtures/pebble.ts';
import { settlesWithin } from '../helpers/timeouts.ts';
import { createDaemon, serviceYaml, waitUntil } from '../helpers/daemon.ts';
import { startWithTls } from '../helpers/tls-daemon.ts';
import type { Pebble } from '../fixtures/pebble.ts';

/** A TLS handshake to 127.0.0.1:`port`: the negotiated protocol and the certificate served, or the error that ended it. */
function handshake(t: TestContext, port: number, opts: tls.ConnectionOptions): Promise<{ alpn: string | false | null; cert: string } | Error> {
  return withTimeout(
    new Promise((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port, ...opts });
      t.after(() => socket.destroy());
      socket.once('secureConnect', () => {
        const x = socket.getPeerX509Certificate();
        resolve({ alpn: socket.alpnProtocol, cert: x === undefined ? '' : x.toString() });
        socket.end();
      });
      socket.once('error', (err) => resolve(err));
    }),
    10_000,
    `a TLS handshake with ${JSON.stringify(opts.ALPNProtocols ?? [])}`,
  );
}

test('the TLS listener shows the challenge certificate to acme-tls/1 for a pending name only', async (t) => {
  const ca = makeCa(t);
  const a = ca.write('a', ['a.test', 'b.test']);
  const store = new CertificateStore({ logger: silentLogger });
  await store.loadFiles([{ hosts: ['a.test', 'b.test'], certFile: a.certFile, keyFile: a.keyFile, isDefault: true }]);
  t.after(() => store.close());
  const app = await startServer(t, (_req, res) => res.end('app'));
  const { proxy } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('u', app.port)], { isDefault: true })] });

  // A challenge certificate made by acme-client, as the ACME manager makes it, pending for a.test only.
  const keyAuthorization = 'token-abc.thumbprint-xyz';
  const [key, cert] = await acme.crypto.createAlpnCertificate({ identifier: { type: 'dns', value: 'a.test' } } as acme.Authorization, keyAuthorization, await acme.crypto.createPrivateEcdsaKey());
  const pending = new Map([['a.test', tls.createSecureContext({ cert, key })]]);
  const responder: AcmeTlsAlpnResponder = { challengeContext: (name) => pending.get(name) };
  const port = await listenTls(proxy, store, { acmeTlsAlpn: responder });

  // The validator: acme-tls/1 only, SNI a.test. The challenge certificate is
  // self-signed and valid for no time at all (acme-client: notBefore = notAfter),
  // and RFC 8737 §3 has validators skip chain checks; this one instead pins it:
  // the certificate served must be exactly the challenge certificate.
  const v = await handshake(t, port, { servername: 'a.test', ALPNProtocols: [ACME_TLS_ALPN], rejectUnauthorized: false });
  assert.ok(!(v instanceof Error), `the validator's handshake: ${String(v)}`);
  assert.equal(v.alpn, ACME_TLS_ALPN);
  assert.equal(new X509Certificate(v.cert).fingerprint256, new X509Certificate(cert).fingerprint256, 'exactly the challenge certificate');
  assert.ok(acme.crypto.isAlpnCertificateAuthorizationValid(v.cert, keyAuthorization), 'the challenge certificate carries the key authorization');

  // Browsers and other clients for the same name, at the same time: the usual certificate (verified), h2 or http/1.1.
  const h2 = await handshake(t, port, { servername: 'a.test', ALPNProtocols: ['h2', 'http/1.1'], ca: ca.caPem });
  assert.ok(!(h2 instanceof Error), String(h2));
  assert.equal(h2.alpn, 'h2');
  const h1 = await handshake(t, port, { servername: 'a.test', ALPNProtocols: ['http/1.1'], ca: ca.caPem });
  assert.ok(!(h1 instanceof Error), String(h1));
  assert.equal(h1.alpn, 'http/1.1');
  const session = http2.connect(`https://127.0.0.1:${port}`, { ca: ca.caPem, servername: 'a.test' });
  session.on('error', () => undefined);
  t.after(() => session.destroy());
  const body = await withTimeout(
    new Promise<string>((resolve, reject) => {
      const req = session.request({ ':path': '/', ':authority': 'a.test' });
      let got = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (got += c));
      req.on('end', () => resolve(got));
      req.on('error', reject);
      req.end();
    }),
    10_000,
    'an HTTP/2 request beside the challenge',
  );
  assert.equal(body, 'app');

  // acme-tls/1 for a name without a pending challenge, or over TLS 1.2 (where OpenSSL picks the certificate before the protocol): refused.
  const other = await handshake(t, port, { servername: 'b.test', ALPNProtocols: [ACME_TLS_ALPN], ca: ca.caPem });
  assert.ok(other instanceof Error && /no.application.protocol/i.test(other.message), `b.test has no challenge: ${String(other)}`);
  const old = await handshake(t, port, { servername: 'a.test', ALPNProtocols: [ACME_TLS_ALPN], maxVersion: 'TLSv1.2', rejectUnauthorized: false });
  assert.ok(old instanceof Error, `TLS 1.2 validator refused: ${String(old)}`);
});

test('pebble validates TLS-ALPN-01 on baton\'s TLS listener (port 80 closed) and issues the certificate baton then serves', async (t) => {
  const ca = makeCa(t);
  const app = await startServer(t, (_req, res) => res.end('app'));
  const { proxy } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('u', app.port)], { isDefault: true })] });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'baton-acme-alpn-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new CertificateStore({ logger: silentLogger });
  t.after(() => store.close());

  // Nothing listens where pebble would check HTTP-01.
  const noHttp = await closedPort(t);
  // The listener is bound first (its port is pebble's tlsPort); pebble's directory URL comes after, so the config is filled in then.
  let manager: AcmeManager | null = null;
  let shown = 0;
  const responder: AcmeTlsAlpnResponder = {
    challengeContext: (name) => {
      const c = manager?.challengeContext(name);
      if (c !== undefined) shown++;
      return c;
    },
  };
  const tlsPort = await listenTls(proxy, store, { acmeTlsAlpn: responder });
  const pebble = await startPebble(t, ca, noHttp, tlsPort);
  const config: AcmeConfig = { hosts: ['localhost'], email: null, directoryUrl: pebble.directoryUrl, caFile: ca.caFile, renewBeforeMs: null, challenge: 'tls-alpn-01' };
  const { logger } = recordingLogger();
  const m = new AcmeManager({ config, stateDir: dir, certificates: store, logger, retryMinMs: 200 });
  manager = m;
  t.after(() => m.stop());
  m.start();
  const deadline = Date.now() + 30_000;
  while (m.state().issued === 0) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out waiting for a certificate; state: ${JSON.stringify(m.state())}\npebble:\n${pebble.log().slice(-3000)}`);
    await settlesWithin(m.changed(), Math.min(left, 500));
  }
  assert.equal(m.state().failures, 0, `no failed order: ${m.state().lastError ?? ''}`);
  assert.ok(shown >= 1, 'pebble\'s validator was shown the challenge certificate on baton\'s TLS port');
  assert.equal(m.challengeContext('localhost'), undefined, 'the challenge certificate is dropped once the order is done');

  // The issued certificate, verified against pebble's root, on the same listener.
  const root = await pebble.rootPem();
  const r = await withTimeout(
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port: tlsPort, servername: 'localhost', ca: root, agent: false, headers: { host: 'localhost' } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
    }),
    5000,
    'GET https://localhost/ with the issued certificate',
  );
  assert.equal(r.status, 200);
  assert.equal(r.body, 'app');
});

test('a daemon with tls.acme.challenge: tls-alpn-01 obtains its certificate through its TLS listener', async (t) => {
  const ca = makeCa(t);
  const d = await createDaemon({ start: false });
  t.after(() => d.cleanup());
  const noHttp = await closedPort(t);
  // pebble validates on the daemon's TLS port, so both take the same free port (both retried if it was taken meanwhile).
  let pebble!: Pebble;
  const tlsPort = await startWithTls(d, {
    prepare: async (port) => {
      pebble = await startPebble(t, ca, noHttp, port);
    },
    tls: () => ['  acme:', '    hosts: [localhost]', '    challenge: tls-alpn-01', `    directory: ${JSON.stringify(pebble.directoryUrl)}`, `    ca_file: ${JSON.stringify(ca.caFile)}`],
    services: serviceYaml({ instances: 1 }),
  });
  const dep = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(dep.code, 0, dep.stdout + dep.stderr);
  await waitUntil('the daemon to log the issued certificate', async () => /acme: certificate issued/.test(await d.daemonLog()), 30_000, 100);
  const root = await pebble.rootPem();
  const body = await withTimeout(
    new Promise<string>((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port: tlsPort, servername: 'localhost', ca: root, agent: false, headers: { host: 'localhost' } }, (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c));
        res.on('end', () => resolve(b));
      });
      req.on('error', reject);
    }),
    5000,
    'GET https://localhost/ from the daemon',
  );
  assert.equal(body.trim(), 'v1');
  assert.match(await d.daemonLog(), /acme: TLS-ALPN-01 challenge certificate shown.*localhost/, 'pebble\'s validator was answered on the TLS listener');
  const st = await d.status();
  assert.equal(st.tls.acme.failures, 0);
});
