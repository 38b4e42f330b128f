// proxy.workers: 2 with a TLS listener and the access log: both workers
// terminate TLS on the one shared TLS socket with the control plane's
// certificates (HTTPS/1.1 and HTTP/2 by ALPN, each worker shown serving both);
// plain HTTP is redirected by each; a deploy under HTTPS and HTTP/2 load fails
// nothing and moves v1 → v2; certificate files replaced under load reach every
// worker (new connections get the new certificate on each, 0 failed); the
// access log is one file, written by the control plane with the lines of both
// workers, rotated by size, counted in status and reopened by a reload; a
// worker killed is started again with the current certificate; `baton
// upgrade` under HTTPS load hands the TLS socket to a new daemon's workers.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import tls from 'node:tls';
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createDaemon, isGone, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad, type LoadResult } from '../helpers/load.ts';
import { withTimeout } from '../helpers/timeouts.ts';
import { certificateLine, startWithTls } from '../helpers/tls-daemon.ts';
import { fromEachWorker as eachWorker, workerRows, type WorkerRow } from '../helpers/workers.ts';
import { makeCa, type TestCa } from '../fixtures/tls-certs.ts';

let d: TestDaemon;
let ca: TestCa;
let tlsPort: number;
let files: { certFile: string; keyFile: string; serial: string };
let accessLog: string;
const cleanups: Array<() => void> = [];

before(async () => {
  ca = makeCa({ after: (fn) => cleanups.push(fn) });
  files = ca.write('site', ['site.test', 'www.site.test']);
  d = await createDaemon({ start: false });
  accessLog = path.join(path.dirname(d.configFile), 'access.log');
  tlsPort = await startWithTls(d, {
    // Small files, many kept: the test counts every line across the rotated files.
    top: ['proxy:', '  workers: 2', '  access_log: { path: ./access.log, max_size: 128KB, keep: 100 }'],
    tls: ['  certificates:', certificateLine(['site.test', 'www.site.test'], files), '  redirect_http: true'],
    services: serviceYaml({ extra: 'hosts: [site.test, www.site.test]' }),
  });
  const r = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
});
after(async () => {
  await d?.cleanup();
  for (const c of cleanups) c();
});

async function workers(): Promise<WorkerRow[]> {
  return workerRows(d);
}

function assertClean(r: LoadResult, label: string): void {
  assert.equal(r.failed, 0, `${label}: ${r.failed} of ${r.total} requests failed: ${r.errors.join('; ')}`);
  assert.ok(r.total > 20, `${label}: only ${r.total} requests ran`);
}

interface Answer {
  status: number;
  body: string;
  serial: string;
  alpn: string;
}

/** One HTTPS/1.1 request on a new connection (ALPN may pick http/1.1 only). */
function https1(servername: string, urlPath = '/'): Promise<Answer> {
  return withTimeout(
    new Promise<Answer>((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port: tlsPort, path: urlPath, servername, ca: ca.caPem, agent: false, ...({ ALPNProtocols: ['http/1.1'] } as object), headers: { host: servername } }, (res) => {
        const socket = res.socket as tls.TLSSocket;
        const serial = socket.getPeerX509Certificate()?.serialNumber ?? '(not kept)';
        const alpn = socket.alpnProtocol || 'none';
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: body.trim(), serial, alpn }));
      });
      req.on('error', reject);
    }),
    5000,
    `GET https://${servername}${urlPath} (HTTP/1.1)`,
  );
}

/** One HTTP/2 request in a new session. */
function h2(servername: string, urlPath = '/'): Promise<Answer> {
  return withTimeout(
    new Promise<Answer>((resolve, reject) => {
      const session = http2.connect(`https://127.0.0.1:${tlsPort}`, { servername, ca: ca.caPem });
      session.on('error', reject);
      session.once('connect', () => {
        const socket = session.socket as tls.TLSSocket;
        const serial = socket.getPeerX509Certificate()?.serialNumber ?? '(not kept)';
        const alpn = session.alpnProtocol ?? 'none';
        const stream = session.request({ ':path': urlPath, ':authority': servername });
        let status = 0;
        let body = '';
        stream.on('response', (h) => (status = Number(h[':status'])));
        stream.on('data', (c: Buffer) => (body += c));
        stream.on('end', () => {
          session.close();
          resolve({ status, body: body.trim(), serial, alpn });
        });
        stream.on('error', reject);
      });
    }),
    5000,
    `GET https://${servername}${urlPath} (HTTP/2)`,
  );
}

function fromEachWorker<T>(send: (attempt: number) => Promise<T>): Promise<Map<number, T[]>> {
  return eachWorker(d, send);
}

function serialOf(servername: string): Promise<string> {
  return withTimeout(
    new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: tlsPort, servername, ca: ca.caPem }, () => {
        const serial = s.getPeerX509Certificate()!.serialNumber;
        s.end();
        resolve(serial);
      });
      s.on('error', reject);
    }),
    5000,
    `a TLS handshake for ${servername}`,
  );
}

interface Line {
  path: string;
  proto: string;
  status: number;
  release: string | null;
}

/** Every line of the access log, the rotated files' included. */
function accessLines(): Line[] {
  const dir = path.dirname(accessLog);
  const names = readdirSync(dir).filter((n) => n === 'access.log' || /^access\.log\.\d+$/.test(n));
  return names.flatMap((n) => readFileSync(path.join(dir, n), 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Line));
}

test('each worker serves HTTPS/1.1 and HTTP/2 (ALPN) with the certificate from the files; plain HTTP is redirected', async () => {
  const ws = await workers();
  assert.equal(ws.length, 2);
  const sent: string[] = [];
  const h1 = await fromEachWorker((i) => {
    sent.push(`/h1-each/${i}`);
    return https1('site.test', `/h1-each/${i}`);
  });
  for (const answers of h1.values()) {
    for (const a of answers) assert.deepEqual(a, { status: 200, body: 'v1', serial: files.serial, alpn: 'http/1.1' });
  }
  const h2s = await fromEachWorker((i) => {
    sent.push(`/h2-each/${i}`);
    return h2('www.site.test', `/h2-each/${i}`);
  });
  for (const answers of h2s.values()) {
    for (const a of answers) assert.deepEqual(a, { status: 200, body: 'v1', serial: files.serial, alpn: 'h2' });
  }
  // The redirect is answered before routing (not counted): 8 new connections, all redirected, whichever worker took each.
  for (let i = 0; i < 8; i++) {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: d.port, path: `/r${i}`, headers: { host: 'site.test' }, agent: false }, (r) => {
        r.resume();
        resolve(r);
      }).on('error', reject);
    });
    assert.equal(res.statusCode, 308);
    assert.equal(res.headers.location, `https://site.test:${tlsPort}/r${i}`);
  }
  // Each worker's requests are in the one access log (written by the control plane).
  await waitUntil('the line of every request above in access.log', () => {
    const paths = new Set(accessLines().map((l) => l.path));
    return sent.every((p) => paths.has(p));
  }, 10_000);
  const lines = accessLines().filter((l) => sent.includes(l.path));
  assert.equal(lines.length, sent.length, 'one line per request');
  for (const l of lines) assert.equal(l.proto, l.path.startsWith('/h2-each/') ? 'h2' : 'h1', JSON.stringify(l));
});

test('a deploy under HTTPS/1.1 (keep-alive and new connections) and HTTP/2 load: 0 failed, v1 → v2, both workers served', async () => {
  const v2 = await d.release('v2');
  const url = `https://127.0.0.1:${tlsPort}/`;
  const opts = { url, maxMs: 60_000, tls: { ca: ca.caPem, servername: 'site.test' }, headers: { host: 'site.test' } };
  const before = (await workers()).map((w) => w.requests);
  const keep = startLoad({ ...opts, concurrency: 2 });
  const fresh = startLoad({ ...opts, concurrency: 2, keepAlive: false });
  const streams = startLoad({ ...opts, concurrency: 3, http2: true });
  const loads = [keep, fresh, streams];
  for (const l of loads) await l.waitFor(50, 15_000);
  const r = await d.cli(['deploy', 'web', v2]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  for (const l of loads) {
    await l.waitFor(l.snapshot().total + 50, 15_000);
    await l.waitForEach(2, 15_000);
  }
  const [a, b, c] = [await keep.stop(), await fresh.stop(), await streams.stop()];
  for (const [res, label] of [[a, 'HTTPS/1.1 keep-alive'], [b, 'HTTPS/1.1 new connections'], [c, 'HTTP/2']] as const) {
    assertClean(res, label);
    assert.deepEqual(Object.keys(res.bodies).sort(), ['v1', 'v2'], `${label}: ${JSON.stringify(res.bodies)}`);
    for (const seq of res.sequences) assert.equal(seq.at(-1), 'v2', `${label}: a client ended on ${seq.join(' → ')}`);
  }
  const sent = a.total + b.total + c.total;
  await waitUntil('the workers\' counts to include the load', async () => (await workers()).reduce((n, w, i) => n + w.requests - before[i]!, 0) >= sent, 10_000);
  const ws = await workers();
  for (const w of ws) assert.ok(w.requests - before[w.index]! > 0, `worker ${w.index} served none of the load: ${JSON.stringify(ws)}`);
  assert.equal((await d.status('web')).services[0].counters.failed, 0);
});

test('certificate files replaced under HTTPS load: 0 failed; every worker serves the new certificate to new connections', async () => {
  const url = `https://127.0.0.1:${tlsPort}/`;
  const fresh = startLoad({ url, concurrency: 2, keepAlive: false, maxMs: 60_000, tls: { ca: ca.caPem, servername: 'site.test' }, headers: { host: 'site.test' } });
  const kept = startLoad({ url, concurrency: 2, maxMs: 60_000, tls: { ca: ca.caPem, servername: 'www.site.test' }, http2: true, headers: { host: 'www.site.test' } });
  await fresh.waitFor(30, 15_000);
  await kept.waitFor(30, 15_000);
  const next = ca.issue(['site.test', 'www.site.test']);
  writeFileSync(`${files.keyFile}.new`, next.key);
  writeFileSync(`${files.certFile}.new`, next.cert);
  renameSync(`${files.keyFile}.new`, files.keyFile);
  renameSync(`${files.certFile}.new`, files.certFile);
  // Handshakes only (no request): several, so that both workers are likely asked; proven per worker below.
  await waitUntil('new handshakes to get the new certificate', async () => (await Promise.all([1, 2, 3, 4].map(() => serialOf('site.test')))).every((s) => s === next.serial), 15_000, 100);
  const [nf, nk] = [fresh.snapshot().total, kept.snapshot().total];
  await fresh.waitFor(nf + 30, 15_000);
  await kept.waitFor(nk + 30, 15_000);
  const [rf, rk] = [await fresh.stop(), await kept.stop()];
  assertClean(rf, 'HTTPS/1.1 new connections');
  assertClean(rk, 'HTTP/2');
  const each = await fromEachWorker((i) => (i % 2 === 0 ? https1('site.test') : h2('www.site.test')));
  for (const [worker, answers] of each) for (const a of answers) assert.equal(a.serial, next.serial, `worker ${worker} served the old certificate`);
  // Loaded and checked once, by the control plane; the workers were sent the pair.
  assert.equal((await d.daemonLog()).match(/tls: certificate reloaded/g)?.length, 1);
  files = { ...files, serial: next.serial };
});

test('a worker killed after the replacement is started again with the current certificate', async () => {
  const before = await workers();
  process.kill(before[0]!.pid!, 'SIGKILL');
  await waitUntil('worker 0 to be started again', async () => {
    const w = (await workers())[0]!;
    return w.pid !== null && w.pid !== before[0]!.pid && w.restarts === 1;
  }, 30_000, 100);
  const each = await fromEachWorker((i) => (i % 2 === 0 ? https1('site.test') : h2('www.site.test')));
  for (const [worker, answers] of each) for (const a of answers) assert.deepEqual({ status: a.status, serial: a.serial }, { status: 200, serial: files.serial }, `worker ${worker}`);
});

test('access log with workers: one file written by the control plane, every request of both workers in it, rotated by size, counts in status, reopened by a reload', async () => {
  // Every request so far (both workers) has its line: written counts them all, in the files kept.
  let status: { path: string; written: number; dropped: number } | null = null;
  await waitUntil('written in status to match the lines in the files and the requests counted', async () => {
    status = (await d.status()).daemon.accessLog;
    const requests = (await d.status('web')).services[0].counters.requests as number;
    return status !== null && status.written === accessLines().length && status.written === requests;
  }, 10_000);
  assert.equal(status!.path, accessLog);
  assert.equal(status!.dropped, 0);
  assert.ok(status!.written > 500, `${status!.written} lines`);
  assert.ok(existsSync(`${accessLog}.1`), 'rotated by size');
  const size = readFileSync(`${accessLog}.1`, 'utf8').length;
  // Rotated once past the size, between two batches of a worker's lines (at most 64 KiB each).
  assert.ok(size >= 128 * 1024 && size <= 128 * 1024 + 70 * 1024, `access.log.1 is ${size} bytes`);
  for (const l of accessLines()) assert.ok(l.status === 200, JSON.stringify(l));
  // A reload reopens the file (an outside rotation moved it away), for lines from either worker.
  renameSync(accessLog, `${accessLog}.moved`);
  assert.equal((await d.cli(['reload'])).code, 0);
  const each = await fromEachWorker((i) => https1('site.test', `/after-reload/${i}`));
  await waitUntil('the lines after the reload in a new access.log', () => {
    if (!existsSync(accessLog)) return false;
    const paths = readFileSync(accessLog, 'utf8').split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as Line).path);
    return paths.length === [...each.values()].reduce((n, a) => n + a.length, 0) && paths.every((p) => p.startsWith('/after-reload/'));
  }, 10_000);
});

test('baton upgrade under HTTPS load: the new daemon\'s workers take the TLS socket, 0 failed, the old ones drain and exit, every request logged once', async () => {
  const before = await d.status();
  const oldPid = before.daemon.pid as number;
  const oldWorkers = (before.daemon.proxyWorkers as WorkerRow[]).map((w) => w.pid!);
  // Every line so far is in the files (those before the reload in access.log.moved).
  const moved = (): number => readFileSync(`${accessLog}.moved`, 'utf8').split('\n').filter((l) => l !== '').length;
  let n0 = 0;
  await waitUntil('every line so far to be written', async () => {
    n0 = accessLines().length;
    return (await d.status()).daemon.accessLog?.written === n0 + moved();
  }, 10_000);
  const url = `https://127.0.0.1:${tlsPort}/`;
  const opts = { url, maxMs: 90_000, tls: { ca: ca.caPem, servername: 'site.test' }, headers: { host: 'site.test' } };
  const fresh = startLoad({ ...opts, concurrency: 2, keepAlive: false });
  const streams = startLoad({ ...opts, concurrency: 2, http2: true });
  await fresh.waitFor(30, 15_000);
  await streams.waitFor(30, 15_000);
  const r = await d.cli(['upgrade', '--json'], 90_000);
  assert.equal(r.code, 0, `baton upgrade failed:\n${r.stdout}\n${r.stderr}`);
  await waitUntil(`the old daemon (pid ${oldPid}) and its workers to exit`, () => [oldPid, ...oldWorkers].every((pid) => isGone(pid)), 30_000, 100);
  const [nf, ns] = [fresh.snapshot().total, streams.snapshot().total];
  await fresh.waitFor(nf + 30, 15_000);
  await streams.waitFor(ns + 30, 15_000);
  const [a, b] = [await fresh.stop(), await streams.stop()];
  assertClean(a, 'HTTPS/1.1 new connections');
  assertClean(b, 'HTTP/2');
  const ws = await workers();
  for (const w of ws) assert.ok(w.pid !== null && !oldWorkers.includes(w.pid), `worker ${w.index} is new`);
  const each = await fromEachWorker(() => https1('site.test'));
  for (const answers of each.values()) for (const x of answers) assert.deepEqual({ status: x.status, serial: x.serial }, { status: 200, serial: files.serial });
  // One line per request, in the one file: those the old workers finished while draining (written by the
  // old daemon, appending) and those of the new workers (written by the new daemon).
  const expected = n0 + a.total + b.total + [...each.values()].flat().length;
  await waitUntil(`${expected} lines in the access log`, () => accessLines().length >= expected, 10_000);
  assert.equal(accessLines().length, expected);
});
