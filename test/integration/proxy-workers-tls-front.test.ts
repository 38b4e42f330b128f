// proxy.workers: 2 at the TLS front door's edges: a TLS listener behind a
// balancer speaking the PROXY protocol (the header before the ClientHello) is
// served by each worker with the client the header names (and the access log
// on stdout has each request once, in the daemon's own stream); ACME certificates
// obtained from a real ACME server (pebble) by the control plane while its
// validation connections reach the workers — HTTP-01 on the plain listener,
// TLS-ALPN-01 on the TLS listener — and then served by each worker; a renewal
// is sent to the workers while they run.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { writeFile } from 'node:fs/promises';
import { createDaemon, serviceYaml, waitUntil, withFreePort } from '../helpers/daemon.ts';
import { withTimeout } from '../helpers/timeouts.ts';
import { certificateLine, startWithTls } from '../helpers/tls-daemon.ts';
import { fromEachWorker } from '../helpers/workers.ts';
import { makeCa } from '../fixtures/tls-certs.ts';
import { startPebble, type Pebble } from '../fixtures/pebble.ts';
import { closedPort } from '../fixtures/proxy-harness.ts';

/** A TLS connection that starts with a PROXY v1 header naming `client` (as a TCP balancer sends it). */
function behindBalancer(port: number, client: string, ca: string, alpn: string): Promise<tls.TLSSocket> {
  return withTimeout(
    new Promise<tls.TLSSocket>((resolve, reject) => {
      const raw = net.connect(port, '127.0.0.1', () => {
        raw.write(`PROXY TCP4 ${client} 127.0.0.1 40000 443\r\n`);
        const s = tls.connect({ socket: raw, servername: 'site.test', ca, ALPNProtocols: [alpn] }, () => resolve(s));
        s.on('error', reject);
      });
      raw.on('error', reject);
    }),
    5000,
    'a TLS connection after a PROXY header',
  );
}

/** GET /echo-headers on `socket` over HTTP/1.1 or HTTP/2: the headers the app saw, and the protocol. */
function echo(socket: tls.TLSSocket): Promise<{ xff: string | undefined; proto: string | false | null }> {
  const proto = socket.alpnProtocol;
  return withTimeout(
    new Promise((resolve, reject) => {
      if (proto === 'h2') {
        const session = http2.connect('https://site.test', { createConnection: () => socket });
        session.on('error', reject);
        const stream = session.request({ ':path': '/echo-headers', ':authority': 'site.test' });
        let body = '';
        stream.on('data', (c: Buffer) => (body += c));
        stream.on('end', () => {
          session.close();
          resolve({ xff: (JSON.parse(body) as Record<string, string>)['x-forwarded-for'], proto });
        });
        stream.on('error', reject);
        return;
      }
      const req = http.get({ createConnection: () => socket, path: '/echo-headers', headers: { host: 'site.test', connection: 'close' } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve({ xff: (JSON.parse(body) as Record<string, string>)['x-forwarded-for'], proto }));
      });
      req.on('error', reject);
    }),
    5000,
    'GET /echo-headers',
  );
}

test('a TLS listener with the PROXY protocol: each worker serves HTTP/1.1 and HTTP/2 with the client the header names, logged (stdout) by the daemon', async (t) => {
  const ca = makeCa(t);
  const files = ca.write('site', ['site.test']);
  const d = await createDaemon({ start: false });
  t.after(() => d.cleanup());
  const tlsPort = await withFreePort(async (port) => {
    await writeFile(
      d.configFile,
      [
        `listen: ["127.0.0.1:${d.port}"]`,
        'state_dir: ./state',
        'proxy: { workers: 2, trusted_proxies: [127.0.0.1], access_log: stdout }',
        'tls:',
        `  listen: [{ address: "127.0.0.1:${port}", proxy_protocol: true }]`,
        '  certificates:',
        certificateLine(['site.test'], files),
        'services:',
        serviceYaml({ instances: 1 }),
        '',
      ].join('\n'),
    );
    await d.start();
    return port;
  });
  const dep = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(dep.code, 0, dep.stdout + dep.stderr);
  let sent = 0;
  for (const alpn of ['http/1.1', 'h2']) {
    const each = await fromEachWorker(d, async (i) => echo(await behindBalancer(tlsPort, `198.51.100.${i + 1}`, ca.caPem, alpn)));
    for (const [worker, answers] of each) {
      for (const a of answers) {
        assert.equal(a.proto, alpn, `worker ${worker}`);
        assert.match(a.xff ?? '', /^198\.51\.100\.\d+$/, `worker ${worker}: the app saw X-Forwarded-For ${a.xff}`);
        sent++;
      }
    }
  }
  // access_log: stdout: every worker's lines, written by the daemon into its own log stream, with the header's client.
  const lines = async (): Promise<{ msg: string; path: string; peer: string; proto: string }[]> =>
    (await d.daemonLog()).split('\n').filter((l) => l.includes('"msg":"access"')).map((l) => JSON.parse(l) as { msg: string; path: string; peer: string; proto: string });
  await waitUntil(`${sent} access lines in the daemon log`, async () => (await lines()).length >= sent, 10_000);
  const logged = await lines();
  assert.equal(logged.length, sent);
  for (const l of logged) {
    assert.equal(l.path, '/echo-headers');
    assert.match(l.peer, /^198\.51\.100\.\d+$/);
  }
  assert.deepEqual([...new Set(logged.map((l) => l.proto))].sort(), ['h1', 'h2']);
  assert.deepEqual((await d.status()).daemon.accessLog, { path: 'stdout', written: sent, dropped: 0 });
});

function httpsGet(port: number, ca: string): Promise<{ status: number; body: string; serial: string }> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port, servername: 'localhost', ca, agent: false, headers: { host: 'localhost' } }, (res) => {
        const serial = (res.socket as tls.TLSSocket).getPeerX509Certificate()?.serialNumber ?? '(not kept)';
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: body.trim(), serial }));
      });
      req.on('error', reject);
    }),
    5000,
    'GET https://localhost/',
  );
}

test('ACME HTTP-01 with workers: pebble validates on the plain listener (a worker answers), each worker serves the certificate, and a renewal reaches the running workers', async (t) => {
  const ca = makeCa(t);
  const d = await createDaemon({ start: false });
  t.after(() => d.cleanup());
  const pebble = await startPebble(t, ca, d.port);
  const tlsPort = await startWithTls(d, {
    top: ['proxy: { workers: 2 }'],
    // Longer than pebble's certificates live: the certificate kept is due for renewal as soon as a daemon starts.
    tls: ['  acme:', '    hosts: [localhost]', '    renew_before: 36500d', `    directory: ${JSON.stringify(pebble.directoryUrl)}`, `    ca_file: ${JSON.stringify(ca.caFile)}`, '  redirect_http: true'],
    services: serviceYaml({ instances: 1 }),
  });
  const dep = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(dep.code, 0, dep.stdout + dep.stderr);
  await waitUntil('the daemon to log the issued certificate', async () => /acme: certificate issued/.test(await d.daemonLog()), 30_000, 100);
  const root = await pebble.rootPem();
  const each = await fromEachWorker(d, () => httpsGet(tlsPort, root));
  const issued = [...each.values()][0]![0]!.serial;
  for (const [worker, answers] of each) for (const a of answers) assert.deepEqual(a, { status: 200, body: 'v1', serial: issued }, `worker ${worker}`);
  const st = await d.status();
  assert.equal(st.tls.certificates[0].source, 'acme');
  assert.equal(st.tls.acme.failures, 0);
  // A new daemon (baton upgrade) starts its workers with the certificate kept in the state directory, which is
  // due: the control plane renews it (HTTP-01 through the new workers) and sends the renewed one to them, running.
  const up = await d.cli(['upgrade', '--json'], 90_000);
  assert.equal(up.code, 0, up.stdout + up.stderr);
  await waitUntil('the renewed certificate to be served', async () => (await httpsGet(tlsPort, root)).serial !== issued, 30_000, 200).catch(async (err: unknown) => {
    throw new Error(`${String(err)}\nstatus: ${JSON.stringify((await d.status()).tls)}\nlog: ${(await d.daemonLog()).split('\n').filter((l) => /acme|tls|upgrade/.test(l)).slice(-30).join('\n')}`);
  });
  const renewed = await fromEachWorker(d, () => httpsGet(tlsPort, root));
  const serials = new Set([...renewed.values()].flat().map((a) => a.serial));
  assert.equal(serials.size, 1, `every worker serves one certificate: ${[...serials].join(', ')}`);
  assert.ok(!serials.has(issued), 'the renewed one');
  assert.equal((await d.status()).tls.acme.failures, 0);
});

test('ACME TLS-ALPN-01 with workers: pebble validates on the shared TLS listener, and each worker serves the certificate', async (t) => {
  const ca = makeCa(t);
  const d = await createDaemon({ start: false });
  t.after(() => d.cleanup());
  const noHttp = await closedPort(t);
  let pebble!: Pebble;
  const tlsPort = await startWithTls(d, {
    prepare: async (port) => {
      pebble = await startPebble(t, ca, noHttp, port);
    },
    top: ['proxy: { workers: 2 }'],
    tls: () => ['  acme:', '    hosts: [localhost]', '    challenge: tls-alpn-01', `    directory: ${JSON.stringify(pebble.directoryUrl)}`, `    ca_file: ${JSON.stringify(ca.caFile)}`],
    services: serviceYaml({ instances: 1 }),
  });
  const dep = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(dep.code, 0, dep.stdout + dep.stderr);
  await waitUntil('the daemon to log the issued certificate', async () => /acme: certificate issued/.test(await d.daemonLog()), 30_000, 100);
  // Logged by the worker whose TLS listener pebble's validator reached.
  assert.match(await d.daemonLog(), /acme: TLS-ALPN-01 challenge certificate shown.*localhost/);
  const root = await pebble.rootPem();
  const each = await fromEachWorker(d, () => httpsGet(tlsPort, root));
  for (const [worker, answers] of each) for (const a of answers) assert.deepEqual({ status: a.status, body: a.body }, { status: 200, body: 'v1' }, `worker ${worker}`);
  assert.equal((await d.status()).tls.acme.failures, 0);
});
