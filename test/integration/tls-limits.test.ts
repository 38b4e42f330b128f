// Limits of the TLS listeners under attack: connections per client address,
// handshakes that never finish, slow headers over TLS, and slowhttptest's
// slowloris with 500 connections against a real daemon, while a normal client
// (another loopback address) keeps being served. Counts, never wall-clock bounds.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { CertificateStore } from '../../src/tls/index.ts';
import type { TlsListenerOptions } from '../../src/proxy/listeners.ts';
import { silentLogger } from '../../src/core/log.ts';
import { service, startProxy, startServer, target, withTimeout } from '../fixtures/proxy-harness.ts';
import { listenTls, makeCa, type TestCa } from '../fixtures/tls-certs.ts';
import { createDaemon, serviceYaml } from '../helpers/daemon.ts';
import { startLoad } from '../helpers/load.ts';
import { certificateLine, startWithTls } from '../helpers/tls-daemon.ts';

async function tlsProxy(t: TestContext, extra: Partial<TlsListenerOptions>, opts: { headersTimeoutMs?: number } = {}): Promise<{ port: number; ca: TestCa }> {
  const ca = makeCa(t);
  const a = ca.write('a', ['a.test']);
  const store = new CertificateStore({ logger: silentLogger });
  await store.loadFiles([{ hosts: ['a.test'], certFile: a.certFile, keyFile: a.keyFile, isDefault: true }]);
  t.after(() => store.close());
  const up = await startServer(t, (_req, res) => res.end('ok'));
  const { proxy } = await startProxy(t, opts);
  proxy.apply({ services: [service('s', [target('u', up.port)], { isDefault: true })] });
  return { port: await listenTls(proxy, store, extra), ca };
}

/** Open a raw TCP connection from `localAddress`; resolves once connected. */
function rawConnection(t: TestContext, port: number, localAddress: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress }, () => resolve(s));
    s.on('error', reject);
    t.after(() => s.destroy());
  });
}

function closedSoon(s: net.Socket, ms: number, what: string): Promise<void> {
  return withTimeout(new Promise<void>((resolve) => (s.destroyed || s.closed ? resolve() : s.once('close', () => resolve()))), ms, what);
}

test('connections beyond the per-client cap are closed at once; other addresses are not affected', async (t) => {
  // A long handshake timeout: the 10 connections within the cap must still be open when counted.
  const { port, ca } = await tlsProxy(t, { maxConnectionsPerClient: 10, handshakeTimeoutMs: 60_000 });
  const sockets: net.Socket[] = [];
  for (let i = 0; i < 15; i++) sockets.push(await rawConnection(t, port, '127.0.0.4'));
  const extra = sockets.slice(10);
  await Promise.all(extra.map((s, i) => closedSoon(s, 5000, `connection ${10 + i} beyond the cap to be closed`)));
  assert.equal(sockets.slice(0, 10).filter((s) => s.destroyed).length, 0, 'the first 10 stay open');
  // Another address still gets served.
  const load = startLoad({ url: `https://127.0.0.1:${port}/`, concurrency: 2, maxRequests: 50, tls: { ca: ca.caPem, servername: 'a.test' }, localAddress: '127.0.0.2' });
  await load.waitFor(50, 30_000);
  const r = await load.stop();
  assert.equal(r.failed, 0, r.errors.join('; '));
  assert.ok(r.ok >= 50);
  // Closed here, not only in cleanup: the proxy's close waits for connections still in their handshake.
  for (const s of sockets) s.destroy();
});

test('handshakes that never finish are dropped; idle TCP, stalled handshakes and slow TLS headers do not stop a normal client', async (t) => {
  const { port, ca } = await tlsProxy(t, { handshakeTimeoutMs: 300, maxConnectionsPerClient: 1000 }, { headersTimeoutMs: 500 });
  // 200 connections that never send a byte, 100 that stop mid-handshake, 100 that send headers slowly over TLS.
  const idle: net.Socket[] = [];
  for (let i = 0; i < 200; i++) idle.push(await rawConnection(t, port, '127.0.0.3'));
  const stalled: net.Socket[] = [];
  for (let i = 0; i < 100; i++) {
    const s = await rawConnection(t, port, '127.0.0.3');
    // The first bytes of a ClientHello record, then nothing.
    s.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]));
    stalled.push(s);
  }
  // What each slow client got before its connection closed (listened from the start: it may close any time).
  const slowAnswers: Promise<string>[] = [];
  for (let i = 0; i < 100; i++) {
    const s = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.3' });
      const c = tls.connect({ socket, servername: 'a.test', ca: ca.caPem, ALPNProtocols: ['http/1.1'] }, () => resolve(c));
      c.on('error', reject);
      t.after(() => c.destroy());
    });
    s.on('error', () => undefined);
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    slowAnswers.push(new Promise<string>((resolve) => s.once('close', () => resolve(got))));
    s.write('GET / HTTP/1.1\r\nHost: a.test\r\nX-a: ');
  }
  const h1 = startLoad({ url: `https://127.0.0.1:${port}/`, concurrency: 2, maxRequests: 200, tls: { ca: ca.caPem, servername: 'a.test' }, localAddress: '127.0.0.2' });
  const h2 = startLoad({ url: `https://127.0.0.1:${port}/`, concurrency: 2, maxRequests: 200, tls: { ca: ca.caPem, servername: 'a.test' }, http2: true, localAddress: '127.0.0.2' });
  await h1.waitFor(200, 30_000);
  await h2.waitFor(200, 30_000);
  const [r1, r2] = [await h1.stop(), await h2.stop()];
  assert.equal(r1.failed + r2.failed, 0, [...r1.errors, ...r2.errors].join('; '));
  assert.ok(r1.ok + r2.ok >= 400);
  // The handshake timeout drops the ones that never finish; the headers timeout the slow senders (408, then close).
  await Promise.all([...idle, ...stalled].map((s) => closedSoon(s, 20_000, 'an unfinished handshake to be dropped')));
  const answers = await withTimeout(Promise.all(slowAnswers), 20_000, 'the slow TLS clients to be answered and closed');
  assert.equal(answers.filter((a) => a.startsWith('HTTP/1.1 408 ')).length, 100);
});

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

test('slowhttptest slowloris, 500 connections over HTTPS against a daemon: a normal client keeps every answer; memory bounded per connection', async (t) => {
  const ca = makeCa(t);
  const files = ca.write('site', ['site.test']);
  const d = await createDaemon({ start: false });
  t.after(() => d.cleanup());
  // The daemon binds the TLS port itself: another one if it was taken meanwhile.
  const tlsPort = await startWithTls(d, {
    tls: ['  certificates:', certificateLine(['site.test'], files), '  max_connections_per_client: 1000'],
    services: serviceYaml({ instances: 1 }),
  });
  const dep = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(dep.code, 0, dep.stdout + dep.stderr);
  const url = `https://127.0.0.1:${tlsPort}/`;
  const tlsOpts = { ca: ca.caPem, servername: 'site.test' };
  // Memory is compared after traffic has warmed the daemon up (the first requests load code).
  const warmLoad = startLoad({ url, concurrency: 2, maxRequests: 300, tls: tlsOpts, localAddress: '127.0.0.2' });
  await warmLoad.waitFor(300, 30_000);
  const warm = await warmLoad.stop();
  assert.equal(warm.failed, 0, warm.errors.join('; '));
  const pid = d.proc.pid!;
  const before0 = rssKb(pid);
  const again = startLoad({ url, concurrency: 2, maxRequests: 400, tls: tlsOpts, localAddress: '127.0.0.2' });
  await again.waitFor(400, 30_000);
  const warmer = await again.stop();
  assert.equal(warmer.failed, 0, warmer.errors.join('; '));
  const before = rssKb(pid);
  t.diagnostic(`daemon RSS after warm-up ${before0} kB, after 400 more requests ${before} kB`);

  const attack = spawn('slowhttptest', ['-H', '-c', '500', '-r', '250', '-i', '2', '-x', '10', '-l', '8', '-p', '3', '-u', url], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let attackOut = '';
  // Its status lines are coloured: keep the text only.
  const plain = (b: Buffer): string => b.toString().replace(new RegExp(String.fromCharCode(27) + '\\[[0-9;]*[A-Za-z]', 'g'), ''); // strip terminal colours
  attack.stdout!.on('data', (b: Buffer) => (attackOut += plain(b)));
  attack.stderr!.on('data', (b: Buffer) => (attackOut += plain(b)));
  const attackDone = new Promise<number | null>((resolve) => attack.once('exit', (code) => resolve(code)));
  t.after(() => {
    try {
      process.kill(-attack.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  });
  // Wait until slowhttptest reports its connections open (its status lines: "connected:  N").
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && !/connected:\s+(?:[2-9]\d\d)/.test(attackOut) && attack.exitCode === null) await new Promise((r) => setTimeout(r, 100));
  const duringLoad = startLoad({ url, concurrency: 2, maxRequests: 400, tls: tlsOpts, localAddress: '127.0.0.2' });
  await duringLoad.waitFor(400, 30_000);
  const during = await duringLoad.stop();
  const peak = rssKb(pid);
  await withTimeout(attackDone, 60_000, 'slowhttptest to finish');
  const connected = Math.max(0, ...[...attackOut.matchAll(/connected:\s+(\d+)/g)].map((m) => Number(m[1])));
  t.diagnostic(`slowloris: up to ${connected} connections held; normal client ${during.ok}/${during.total}; daemon RSS ${Math.round(before / 1024)} MB → ${Math.round(peak / 1024)} MB during the attack`);
  assert.ok(connected >= 200, `slowhttptest held only ${connected} connections:\n${attackOut.slice(-2000)}`);
  assert.equal(during.failed, 0, during.errors.join('; '));
  assert.ok(during.ok >= 400);
  // A held TLS connection costs OpenSSL state and Node's socket, parser and header buffers: measured
  // 42–48 kB here. The bound is per connection held (the attack's own count), with room for GC timing.
  const perConnection = (peak - before) / connected;
  assert.ok(perConnection < 96, `the daemon grew by ${Math.round(peak - before)} kB for ${connected} slow connections (${perConnection.toFixed(1)} kB each)`);
});
