// proxy.access_log on a real daemon with real requests: off by default (no
// line anywhere), turned on by `baton reload`, one JSON line per exchange with
// who answered and how (ok, retried, an app 500, baton's 502, the limits' 413
// and 431, a WebSocket tunnel); no query string and no header beyond Host;
// HTTP/2 over TLS logged as h2 to the daemon's log stream (`stdout`);
// requests the HTTP/1.1 parser refuses (malformed, head too large, header
// timeout) logged once each, on plain and TLS listeners, with and without
// proxy workers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { createDaemon, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';
import { makeCa } from '../fixtures/tls-certs.ts';
import { withTimeout } from '../helpers/timeouts.ts';
import { certificateLine, startWithTls } from '../helpers/tls-daemon.ts';

interface Line {
  time: string;
  client: string;
  peer: string;
  method: string | null;
  host: string | null;
  path: string | null;
  proto: string;
  status: number;
  bytes: number;
  ms: number | null;
  service: string | null;
  release: string | null;
  instance: string | null;
  outcome: string;
  retries: number;
  /** Only on the line of a request the parser refused: its error code. */
  reason?: string;
  msg?: string;
}

async function configure(d: TestDaemon, proxy: string, extra: string): Promise<void> {
  await d.writeConfig(serviceYaml({ instances: 1, extra }));
  await writeFile(d.configFile, `proxy: ${proxy}\n${await readFile(d.configFile, 'utf8')}`);
}

async function call(url: string, opts: { method?: 'GET' | 'POST'; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  const r = await request(url, { method: opts.method ?? 'GET', body: opts.body, headers: { accept: 'text/plain', ...opts.headers } });
  return { status: r.statusCode, body: await r.body.text(), headers: r.headers };
}

async function fileLines(file: string): Promise<Line[]> {
  if (!existsSync(file)) return [];
  return (await readFile(file, 'utf8')).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Line);
}

/** The line for `path` once it is written (the access log writes when the exchange ends). */
async function lineFor(lines: () => Promise<Line[]>, what: string, match: (l: Line) => boolean): Promise<Line> {
  let found: Line | undefined;
  await waitUntil(`the access log line of ${what}`, async () => (found = (await lines()).find(match)) !== undefined, 10_000);
  return found!;
}

test('access log: off by default; a reload turns it on; ok, app 500, baton 502, 413, 431 and a WebSocket each get their line', async (t) => {
  const d = await createDaemon({ start: false });
  t.after(() => d.cleanup());
  const file = path.join(d.dir, 'access.log');
  // The test's client stands for a trusted balancer too (from the start: a reload trusts new connections only).
  await configure(d, '{ trusted_proxies: ["127.0.0.1"] }', 'limits: { max_body_size: 1KB }');
  await d.start();
  // The app answers 500 to every second request on its default path.
  const dep = await d.cli(['deploy', 'web', await d.release('v1', { APP_ERROR_EVERY: '2' })]);
  assert.equal(dep.code, 0, dep.stdout + dep.stderr);

  // Off (the default): served, and no line anywhere.
  assert.equal((await call(`${d.url}/first`)).status, 200);
  const before = await d.status();
  assert.equal(before.daemon.accessLog, null);
  assert.ok(!(await d.daemonLog()).includes('"msg":"access"'), 'no access line in the daemon log while off');
  assert.equal(existsSync(file), false);

  await configure(d, `{ access_log: ${JSON.stringify(file)}, max_headers: 10, trusted_proxies: ["127.0.0.1"] }`, 'limits: { max_body_size: 1KB }');
  const r = await d.cli(['reload']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /proxy\.access_log: .* \(applies now\)/);
  const lines = (): Promise<Line[]> => fileLines(file);

  const inst = (await d.status('web')).services[0].instances[0];
  const release = inst.release as string;

  // The app's 500 (its second request on the default path).
  assert.equal((await call(`${d.url}/broken`)).status, 500);
  // An ordinary request carrying secrets in its query and headers.
  const ok = await call(`${d.url}/page?token=s3cret`, { headers: { authorization: 'Bearer s3cret', cookie: 'session=s3cret' } });
  assert.equal(ok.status, 200);
  // Through a trusted balancer: the client it saw (the last X-Forwarded-For entry) is the one logged.
  assert.equal((await call(`${d.url}/echo-headers`, { headers: { 'x-forwarded-for': '198.51.100.7, 203.0.113.9' } })).status, 200);
  // baton's 502: the instance cuts the connection without an answer.
  const cut = await call(`${d.url}/destroy`);
  assert.equal(cut.status, 502);
  assert.equal(cut.headers['x-baton-error'], 'upstream_failed');
  // The limits: a body over max_body_size (413), more fields than max_headers (431).
  assert.equal((await call(`${d.url}/upload`, { method: 'POST', body: 'x'.repeat(2000) })).status, 413);
  const many: Record<string, string> = {};
  for (let i = 0; i < 20; i++) many[`x-field-${i}`] = 'v';
  assert.equal((await call(`${d.url}/fields`, { headers: many })).status, 431);
  // A WebSocket through the tunnel: logged when it closes.
  const ws = new WebSocket(`ws://127.0.0.1:${d.port}/ws`);
  t.after(() => ws.terminate());
  const hello = await withTimeout(new Promise<string>((resolve, reject) => {
    ws.once('message', (m) => resolve(String(m)));
    ws.once('error', reject);
  }), 10_000, 'the WebSocket greeting');
  assert.equal(hello, 'hello v1');
  await withTimeout(new Promise<void>((resolve) => {
    ws.once('close', () => resolve());
    ws.close(1000);
  }), 10_000, 'the WebSocket close');

  const app500 = await lineFor(lines, 'the app 500', (l) => l.path === '/broken');
  assert.equal(app500.status, 500);
  assert.equal(app500.outcome, 'app_5xx');
  assert.equal(app500.instance, inst.id);
  assert.equal(app500.release, release);

  const okLine = await lineFor(lines, 'the ok request', (l) => l.path === '/page');
  assert.deepEqual(
    { peer: okLine.peer, method: okLine.method, host: okLine.host, proto: okLine.proto, status: okLine.status, bytes: okLine.bytes, service: okLine.service, release: okLine.release, instance: okLine.instance, outcome: okLine.outcome, retries: okLine.retries, client: okLine.client },
    { peer: '127.0.0.1', method: 'GET', host: `127.0.0.1:${d.port}`, proto: 'h1', status: 200, bytes: 'v1\n'.length, service: 'web', release, instance: inst.id, outcome: 'ok', retries: 0, client: '127.0.0.1' },
  );
  assert.ok(okLine.ms !== null && okLine.ms >= 0 && Number.isFinite(okLine.ms));
  assert.ok(!Number.isNaN(Date.parse(okLine.time)));
  const text = await readFile(file, 'utf8');
  assert.ok(!text.includes('s3cret'), 'no query string, Authorization or Cookie in the access log');

  const forwarded = await lineFor(lines, 'the request through a trusted balancer', (l) => l.path === '/echo-headers');
  assert.deepEqual([forwarded.client, forwarded.peer, forwarded.outcome], ['203.0.113.9', '127.0.0.1', 'ok']);

  const bad = await lineFor(lines, "baton's 502", (l) => l.path === '/destroy');
  assert.equal(bad.status, 502);
  assert.equal(bad.outcome, 'upstream_failed');
  assert.equal(bad.instance, inst.id);
  assert.ok(bad.bytes > 0, 'the size of baton\'s page');

  const body = await lineFor(lines, 'the 413', (l) => l.path === '/upload');
  assert.equal(body.status, 413);
  assert.equal(body.outcome, 'body_too_large');
  assert.equal(body.service, 'web');
  assert.equal(body.instance, null);

  const fields = await lineFor(lines, 'the 431', (l) => l.path === '/fields');
  assert.equal(fields.status, 431);
  assert.equal(fields.outcome, 'too_many_headers');

  const tunnel = await lineFor(lines, 'the WebSocket', (l) => l.path === '/ws');
  assert.equal(tunnel.status, 101);
  assert.equal(tunnel.outcome, 'ok');
  assert.equal(tunnel.instance, inst.id);
  assert.ok(tunnel.bytes > 0, 'the 101 and the greeting were sent to the client');

  // Nothing before the reload, one line per request after it.
  assert.equal((await lines()).filter((l) => l.path === '/first').length, 0);
  await waitUntil('the access log counts in status', async () => (await d.status()).daemon.accessLog?.written === 7, 10_000);
  assert.deepEqual((await d.status()).daemon.accessLog, { path: file, written: 7, dropped: 0 });
  const shown = (await d.cli(['status'])).stdout;
  assert.ok(shown.includes(`access log: ${file}, 7 line(s) written\n`), shown);

  // A reload reopens the file: one moved away (an outside rotation) is created again.
  await rename(file, `${file}.old`);
  assert.equal((await d.cli(['reload'])).code, 0);
  assert.equal((await call(`${d.url}/pid`)).status, 200);
  await lineFor(lines, 'the request after the outside rotation', (l) => l.path === '/pid');

  // A path that cannot be opened: the reload is refused, naming it, and the log goes on where it was.
  await configure(d, `{ access_log: "/nonexistent-dir/access.log", max_headers: 10, trusted_proxies: ["127.0.0.1"] }`, 'limits: { max_body_size: 1KB }');
  const refused = await d.cli(['reload']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr + refused.stdout, /proxy\.access_log: cannot open \/nonexistent-dir\/access\.log/);
  assert.equal((await call(`${d.url}/healthz`)).status, 200);
  await lineFor(lines, 'a request after the refused reload', (l) => l.path === '/healthz');
});

test('access log to stdout: HTTP/2 over TLS is logged as h2 in the daemon log stream', async (t) => {
  const ca = makeCa(t);
  const files = ca.write('site', ['site.test']);
  const d = await createDaemon({ start: false });
  t.after(() => d.cleanup());
  const tlsPort = await startWithTls(d, {
    top: ['proxy: { access_log: stdout }'],
    tls: ['  certificates:', certificateLine(['site.test'], files)],
    services: serviceYaml({ instances: 1, extra: 'hosts: [site.test]' }),
  });
  const dep = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(dep.code, 0, dep.stdout + dep.stderr);

  const session = http2.connect(`https://127.0.0.1:${tlsPort}`, { ca: ca.caPem, servername: 'site.test' });
  session.on('error', () => undefined);
  t.after(() => session.destroy());
  const status = await withTimeout(new Promise<number>((resolve, reject) => {
    const req = session.request({ ':path': '/over-h2?q=1', ':authority': 'site.test' });
    let s = 0;
    req.on('response', (h) => (s = Number(h[':status'])));
    req.on('data', () => undefined);
    req.on('end', () => resolve(s));
    req.on('error', reject);
  }), 10_000, 'the HTTP/2 request');
  assert.equal(status, 200);

  const logged = (): Promise<Line[]> => d.daemonLog().then((text) => text.split('\n').filter((l) => l.includes('"msg":"access"')).map((l) => JSON.parse(l) as Line));
  const line = await lineFor(logged, 'the HTTP/2 request', (l) => l.path === '/over-h2');
  assert.equal(line.proto, 'h2');
  assert.equal(line.host, 'site.test');
  assert.equal(line.status, 200);
  assert.equal(line.outcome, 'ok');
  assert.equal(line.service, 'web');
  assert.equal(line.client, '127.0.0.1');
});

/** Send `bytes` (nothing: stay silent) on a new connection and read until the daemon closes it: the answer's status line. */
async function refusedExchange(open: () => net.Socket, bytes: string | null, what: string): Promise<string> {
  return withTimeout(new Promise<string>((resolve, reject) => {
    const s = open();
    let answer = '';
    s.on(s instanceof tls.TLSSocket ? 'secureConnect' : 'connect', () => {
      if (bytes !== null) s.write(bytes);
    });
    s.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    s.on('close', () => resolve(answer.split('\r\n')[0]!));
    s.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? undefined : reject(err)));
  }), 10_000, what);
}

for (const workers of [1, 2]) {
  test(`access log, proxy.workers ${workers}: a malformed request, a head over max_header_size and a header timeout each get one line (plain and TLS); the daemon keeps serving`, async (t) => {
    const ca = makeCa(t);
    const files = ca.write('site', ['site.test']);
    const d = await createDaemon({ start: false });
    t.after(() => d.cleanup());
    const file = path.join(d.dir, 'access.log');
    const tlsPort = await startWithTls(d, {
      top: [`proxy: { access_log: ${JSON.stringify(file)}, headers_timeout: 1s, workers: ${workers} }`],
      tls: ['  certificates:', certificateLine(['site.test'], files)],
      services: serviceYaml({ instances: 1, extra: 'hosts: [site.test]' }),
    });
    const dep = await d.cli(['deploy', 'web', await d.release('v1')]);
    assert.equal(dep.code, 0, dep.stdout + dep.stderr);

    const plain = (): net.Socket => net.connect(d.port, '127.0.0.1');
    const secure = (): net.Socket => tls.connect({ port: tlsPort, host: '127.0.0.1', servername: 'site.test', ca: ca.caPem });
    const listeners = [{ name: 'plain', open: plain }, { name: 'TLS', open: secure }];
    const expected: { status: number; outcome: string; reason: string }[] = [];
    for (const l of listeners) {
      // A header line without its colon.
      assert.match(await refusedExchange(l.open, 'GET /secret?token=1 HTTP/1.1\r\nHost site.test\r\n\r\n', `a malformed request (${l.name})`), /^HTTP\/1\.1 400 /);
      assert.match(await refusedExchange(l.open, `GET / HTTP/1.1\r\nHost: site.test\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`, `a head over max_header_size (${l.name})`), /^HTTP\/1\.1 431 /);
      // Half a head, then silence until the header timeout.
      assert.match(await refusedExchange(l.open, 'GET / HTTP/1.1\r\nHost: site.test\r\n', `the header timeout (${l.name})`), /^HTTP\/1\.1 408 /);
      // A connection that never sends a byte (a browser's preconnect) is closed at the timeout without a line, as in nginx.
      assert.match(await refusedExchange(l.open, null, `a silent connection (${l.name})`), /^HTTP\/1\.1 408 /);
      expected.push(
        { status: 400, outcome: 'bad_request', reason: 'HPE_INVALID_HEADER_TOKEN' },
        { status: 431, outcome: 'headers_too_large', reason: 'HPE_HEADER_OVERFLOW' },
        { status: 408, outcome: 'headers_timeout', reason: 'ERR_HTTP_REQUEST_TIMEOUT' },
      );
    }

    // Still serving, and the ordinary request logged as before.
    const ok = await call(`${d.url}/after`, { headers: { host: 'site.test' } });
    assert.equal(ok.status, 200);
    const lines = (): Promise<Line[]> => fileLines(file);
    await lineFor(lines, 'the request after the refusals', (l) => l.path === '/after');
    const refused = (all: Line[]): Line[] => all.filter((l) => l.reason !== undefined);
    await waitUntil(`${expected.length} refusal lines`, async () => refused(await lines()).length >= expected.length, 10_000);
    const got = refused(await lines());
    assert.deepEqual(
      got.map((l) => ({ status: l.status, outcome: l.outcome, reason: l.reason })).sort((a, b) => a.status - b.status),
      [...expected].sort((a, b) => a.status - b.status),
      'one line for each refusal, none for the silent connection',
    );
    for (const l of got) {
      assert.deepEqual(
        { client: l.client, peer: l.peer, method: l.method, host: l.host, path: l.path, proto: l.proto, ms: l.ms, service: l.service, release: l.release, instance: l.instance, retries: l.retries },
        { client: '127.0.0.1', peer: '127.0.0.1', method: null, host: null, path: null, proto: 'h1', ms: null, service: null, release: null, instance: null, retries: 0 },
        'what the parser never gave is null, not guessed',
      );
      assert.ok(l.bytes > 0, 'the size of baton\'s page');
    }
    assert.equal((await lines()).filter((l) => l.reason === undefined).length, 1, 'the ordinary request has its line, without a reason');
  });
}
