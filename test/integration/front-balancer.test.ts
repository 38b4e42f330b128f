// baton as the front balancer: a front daemon whose service's targets are
// three real "host" baton daemons on their own loopback addresses, under
// load through the front, counting every failure: a rolling deploy host by
// host, a host drained (no new request, in-flight ones finish), weights, and
// a host killed (its requests retried on the others, its checks take it out).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createDaemon, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad, type LoadResult } from '../helpers/load.ts';
import { ControlClient } from '../../src/control/client.ts';
import path from 'node:path';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';

const HOSTS = [
  { name: 'h1', address: '127.0.0.2' },
  { name: 'h2', address: '127.0.0.3' },
  { name: 'h3', address: '127.0.0.4' },
];

let hosts: TestDaemon[] = [];
let front: TestDaemon;

function frontYaml(weights: Record<string, number> = {}): string {
  const targets = HOSTS.map((h, i) => {
    const w = weights[h.name];
    const address = `${h.address}:${hosts[i]!.port}`;
    return w === undefined ? `      ${h.name}: "${address}"` : `      ${h.name}: { address: "${address}", weight: ${w} }`;
  });
  return [
    '  shop:',
    '    targets:',
    ...targets,
    '    health: { path: /_baton/health, interval: 200ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 2 }',
    '    upstream: { connect_timeout: 1s }',
    '    drain_timeout: 5s',
  ].join('\n');
}

/**
 * The front's view of each target, by name: asked on its control socket from
 * this process (a CLI takes a second to start on a busy machine, longer than
 * the timings these tests watch).
 */
async function targets(): Promise<Record<string, any>> {
  const s = await new ControlClient(path.join(front.dir, 'state', 'baton.sock')).get<any>('/status');
  return Object.fromEntries(s.fronts[0].targets.map((t: any) => [t.name, t]));
}

function assertClean(res: LoadResult, what: string): void {
  assert.equal(res.failed, 0, `${what}: ${res.failed} failed of ${res.total}: ${res.errors.join(' | ')}`);
  assert.ok(res.ok > 50, `${what}: only ${res.ok} requests answered`);
}

/**
 * A file whose existence lets the app answer `/wait?file=` requests: they stay
 * in flight exactly until release() (or the end of the file's tests).
 */
function heldUntil(): { file: string; release: () => void } {
  const file = path.join(heldDir, `go-${++heldCount}`);
  const release = (): void => writeFileSync(file, '');
  releases.push(release);
  return { file, release };
}
let heldCount = 0;
const heldDir = mkdtempSync(path.join(tmpdir(), 'baton-front-held-'));
const releases: (() => void)[] = [];

/** Which host answered each body ("h2-v1" → h2). */
function byHost(res: LoadResult): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [body, n] of Object.entries(res.bodies)) {
    const h = body.split('-')[0]!;
    out[h] = (out[h] ?? 0) + n;
  }
  return out;
}

before(async () => {
  hosts = await Promise.all(HOSTS.map((h) => createDaemon({ listenHost: h.address, services: serviceYaml({ instances: 2 }) })));
  await Promise.all(hosts.map(async (d, i) => {
    const r = await d.cli(['deploy', 'web', await d.release(`${HOSTS[i]!.name}-v1`)]);
    assert.equal(r.code, 0, r.stderr);
  }));
  front = await createDaemon({ services: '', start: false, metrics: true });
  await front.writeConfig(frontYaml());
  await front.start();
  await waitUntil('every target in rotation at the front', async () => Object.values(await targets()).every((t) => t.inRotation), 10_000);
  const check = await front.cli(['check']);
  assert.equal(check.stdout, 'baton.yaml: ok (1 service: shop (front: 3 targets))\n');
});

after(async () => {
  // Requests still held (a test that failed before letting them go) are answered, so nothing waits on them.
  for (const release of releases) release();
  await Promise.all([front?.cleanup(), ...hosts.map((h) => h.cleanup())]);
  rmSync(heldDir, { recursive: true, force: true });
});

test('a rolling deploy host by host behind the front: 0 failed, every host on v2', async () => {
  const load = startLoad({ url: `${front.url}/`, concurrency: 4, keepAlive: true });
  await load.waitFor(100, 20_000);
  for (const [i, d] of hosts.entries()) {
    const r = await d.cli(['deploy', 'web', await d.release(`${HOSTS[i]!.name}-v2`)]);
    assert.equal(r.code, 0, `${HOSTS[i]!.name}: ${r.stdout}\n${r.stderr}`);
  }
  const seen = load.snapshot().total;
  await load.waitFor(seen + 100, 20_000);
  const res = await load.stop();
  assertClean(res, 'rolling deploy');
  for (const h of HOSTS) {
    assert.ok((res.bodies[`${h.name}-v1`] ?? 0) > 0, `${h.name} served v1: ${JSON.stringify(res.bodies)}`);
    assert.ok((res.bodies[`${h.name}-v2`] ?? 0) > 0, `${h.name} served v2: ${JSON.stringify(res.bodies)}`);
  }
  // Each client went from v1 to v2 on each host once at most: per host, never back.
  for (const seq of res.sequences) {
    for (const h of HOSTS) {
      const mine = seq.filter((b) => b.startsWith(`${h.name}-`));
      assert.ok(mine.lastIndexOf(`${h.name}-v1`) < Math.max(0, mine.indexOf(`${h.name}-v2`)) || !mine.includes(`${h.name}-v2`) || !mine.includes(`${h.name}-v1`), `a client went back to v1 on ${h.name}: ${mine.join(' ')}`);
    }
  }

  // A WebSocket through the front reaches a host's app.
  const ws = new WebSocket(`ws://127.0.0.1:${front.port}/ws`);
  const hello = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no WebSocket greeting through the front within 5 s')), 5000);
    ws.once('message', (m) => { clearTimeout(t); resolve(String(m)); });
    ws.once('error', (e) => { clearTimeout(t); reject(e); });
  });
  assert.match(hello, /^hello h[123]-v2$/);
  const echo = new Promise<string>((resolve) => ws.once('message', (m) => resolve(String(m))));
  ws.send('ping through the front');
  assert.equal(await echo, 'ping through the front');
  ws.close();

  // Counters per target: status and /metrics (the target's name is the `release` label).
  const t = await targets();
  for (const h of HOSTS) assert.ok(t[h.name].requests > 0 && t[h.name].status['2xx'] > 0, `${h.name}: ${JSON.stringify(t[h.name])}`);
  const metrics = await (await fetch(`http://127.0.0.1:${front.metricsPort}/metrics`)).text();
  for (const h of HOSTS) assert.match(metrics, new RegExp(`baton_requests_total\\{service="shop",release="${h.name}"\\} [1-9]`));
});

test('a drained host gets nothing new from the front; its in-flight requests finish; undrain brings it back', async () => {
  const load = startLoad({ url: `${front.url}/`, concurrency: 3, keepAlive: true });
  // Requests held in flight on every host (the balancer spreads them) until the front has seen the drain,
  // however long the CLI calls take on a busy machine: the app answers them once `go` exists.
  const go = heldUntil();
  const slow = startLoad({ url: `${front.url}/wait?file=${encodeURIComponent(go.file)}`, concurrency: 6, keepAlive: true, maxRequests: 6 });
  await waitUntil('slow requests in flight on h2', async () => (await targets())['h2'].inflight > 0, 10_000);
  const drained = await hosts[1]!.cli(['drain']);
  assert.equal(drained.code, 0, drained.stderr);
  let seenDrained: any = null;
  await waitUntil('the front to see h2 drained', async () => (seenDrained = (await targets())['h2']).state === 'drain', 10_000);
  assert.ok(seenDrained.inflight > 0, 'requests were in flight on h2 when the front took it out');
  const at = seenDrained.requests;
  const seen = load.snapshot().total;
  await load.waitFor(seen + 200, 20_000);
  go.release();
  const slowRes = await slow.stop();
  assert.equal(slowRes.failed, 0, `slow requests: ${slowRes.errors.join(' | ')}`);
  assert.ok((slowRes.bodies['h2-v2'] ?? 0) > 0, `a slow request was on h2 when it was drained: ${JSON.stringify(slowRes.bodies)}`);
  const after = await targets();
  assert.equal(after['h2'].requests, at, 'h2 got new requests from the front while drained');
  assert.equal(after['h2'].inRotation, false);
  assert.match(after['h2'].reason, /drained/);

  const undrained = await hosts[1]!.cli(['undrain']);
  assert.equal(undrained.code, 0, undrained.stderr);
  await waitUntil('the front to put h2 back', async () => (await targets())['h2'].inRotation, 10_000);
  await waitUntil('h2 to get requests again', async () => (await targets())['h2'].requests > at, 10_000);
  const res = await load.stop();
  assertClean(res, 'drain');
});

test('an operator drain of a target at the front: nothing new to it, in flight finishes, kept across a reload', async () => {
  const load = startLoad({ url: `${front.url}/`, concurrency: 3, keepAlive: true });
  const go = heldUntil();
  const slow = startLoad({ url: `${front.url}/wait?file=${encodeURIComponent(go.file)}`, concurrency: 6, keepAlive: true, maxRequests: 6 });
  await waitUntil('slow requests in flight on h3', async () => (await targets())['h3'].inflight > 0, 10_000);
  const r = await front.cli(['target', 'drain', 'shop', 'h3', '--reason', 'kernel update']);
  assert.equal(r.code, 0, r.stderr);
  const t = await targets();
  assert.equal(t['h3'].state, 'drain');
  assert.ok(t['h3'].inflight > 0, 'requests were in flight on h3 when it was drained');
  assert.equal(t['h3'].operator.reason, 'kernel update');
  const at = t['h3'].requests;
  const seen = load.snapshot().total;
  await load.waitFor(seen + 200, 20_000);
  go.release();
  const slowRes = await slow.stop();
  assert.equal(slowRes.failed, 0, `slow requests: ${slowRes.errors.join(' | ')}`);
  assert.ok((slowRes.bodies['h3-v2'] ?? 0) > 0, `a slow request was on h3 when it was drained: ${JSON.stringify(slowRes.bodies)}`);
  assert.equal((await targets())['h3'].requests, at, 'h3 got new requests while drained at the front');
  const reload = await front.cli(['reload']);
  assert.equal(reload.code, 0, reload.stderr);
  assert.equal((await targets())['h3'].inRotation, false, 'a reload keeps the operator drain');

  const back = await front.cli(['target', 'undrain', 'shop', 'h3']);
  assert.equal(back.code, 0, back.stderr);
  await waitUntil('h3 to get requests again', async () => (await targets())['h3'].requests > at, 10_000);
  const unknown = await front.cli(['target', 'drain', 'shop', 'h9']);
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /service "shop" has no target "h9" \(targets: h1, h2, h3\)/);
  assertClean(await load.stop(), 'operator drain');
});

test('weights: a target of weight 3 gets three times the share of each weight-1 target', async (t) => {
  const shares = async (what: string, concurrency: number): Promise<void> => {
    const load = startLoad({ url: `${front.url}/`, concurrency, keepAlive: true, maxRequests: 500 });
    await load.waitFor(500, 60_000);
    const res = await load.stop();
    assertClean(res, what);
    const n = byHost(res);
    const share = (h: string): number => (n[h] ?? 0) / res.ok;
    t.diagnostic(`${what}: ${JSON.stringify(n)} of ${res.ok}`);
    // 3:1:1 → 60%, 20%, 20%: the smooth weighted round robin is exact; 3 points for requests at the edges.
    assert.ok(Math.abs(share('h1') - 0.6) < 0.03, `${what}: h1 share ${share('h1')}: ${JSON.stringify(n)}`);
    for (const h of ['h2', 'h3']) assert.ok(Math.abs(share(h) - 0.2) < 0.03, `${what}: ${h} share ${share(h)}: ${JSON.stringify(n)}`);
  };
  await front.writeConfig(frontYaml({ h1: 3 }));
  const r = await front.cli(['reload']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /services\.shop\.targets\.h1: weight 1 → 3/);
  // least_outstanding (the default): one client at a time leaves every target equally idle, so the weights decide each turn.
  await shares('least_outstanding, one client', 1);
  // round_robin: the weights alone, whatever the load.
  await front.writeConfig(frontYaml({ h1: 3 }).replace('    drain_timeout: 5s', '    drain_timeout: 5s\n    balance: round_robin'));
  assert.equal((await front.cli(['reload'])).code, 0);
  await shares('round_robin, four clients', 4);
});

test('the front daemon replaced by `baton upgrade` under load: 0 failed, every target routed by the new one, counters continue', async () => {
  const load = startLoad({ url: `${front.url}/`, concurrency: 4, keepAlive: true });
  await load.waitFor(100, 20_000);
  const before = (await front.status()).daemon.pid;
  const requestsBefore = (await front.status()).fronts[0].counters.requests;
  const r = await front.cli(['upgrade', '--json'], 90_000);
  assert.equal(r.code, 0, `baton upgrade failed:\n${r.stdout}\n${r.stderr}`);
  const s = await front.status();
  assert.notEqual(s.daemon.pid, before, 'the new daemon answers');
  // The new daemon checked every target before it took the listeners over: all in rotation at once.
  assert.ok(s.fronts[0].targets.every((t: any) => t.inRotation), JSON.stringify(s.fronts[0].targets.map((t: any) => [t.name, t.state])));
  // The old daemon hands its totals over once it has drained.
  await waitUntil('the front counters to continue from the old daemon', async () => (await front.status()).fronts[0].counters.requests >= requestsBefore, 20_000, 200);
  const seen = load.snapshot().total;
  await load.waitFor(seen + 200, 20_000);
  assertClean(await load.stop(), 'front upgrade');
});

test('a host killed: its requests are retried on the others, its checks take it out', async (tc) => {
  await front.writeConfig(frontYaml());
  assert.equal((await front.cli(['reload'])).code, 0);
  const load = startLoad({ url: `${front.url}/`, concurrency: 4, keepAlive: true });
  await load.waitFor(200, 20_000);
  await hosts[2]!.kill9();
  await waitUntil('the front to take h3 out', async () => (await targets())['h3'].state === 'down', 10_000);
  const seen = load.snapshot().total;
  await load.waitFor(seen + 200, 20_000);
  const res = await load.stop();
  assertClean(res, 'host killed');
  const t = await targets();
  assert.equal(t['h3'].inRotation, false);
  assert.match(t['h3'].reason, /ECONNREFUSED/);
  const s = await front.status();
  assert.equal(s.fronts[0].counters.failed, 0, 'the front failed no request itself');
  tc.diagnostic(`killed: ${res.total} requests, ${res.failed} failed, ${s.fronts[0].counters.retries} retried by the front`);
  const text = await front.cli(['status']);
  assert.match(text.stdout, /front service shop \(default\)/);
  assert.match(text.stdout, /\n +h3 +127\.0\.0\.4:\d+ +down /);
  assert.match(text.stdout, /\n +h3: ECONNREFUSED\n/);
});
