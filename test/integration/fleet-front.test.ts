// A fleet whose balancer is a front baton (`balancer.type: baton`): two real
// hosts (sshd + baton daemon each) behind a third host's baton whose front
// service targets them, driven by the real `baton fleet` over real OpenSSH,
// under load through the front: `fleet drain` / `undrain` tell the front
// (observed: nothing in flight to the host), and a rolling deploy with
// `--drain` takes each host out of the front, switches it and puts it back,
// with 0 failed requests.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createFleet, fleetServiceYaml, type FleetHost, type TestFleet } from '../helpers/fleet-hosts.ts';
import { fleetYaml } from '../helpers/fleet-file.ts';
import { startLoad } from '../helpers/load.ts';
import { waitUntil } from '../helpers/daemon.ts';

let f: TestFleet;
let front: FleetHost;

/** The front's view of its targets, by name. */
async function targets(): Promise<Record<string, any>> {
  const s = await front.status('shop');
  return Object.fromEntries(s.fronts[0].targets.map((t: any) => [t.name, t]));
}

before(async () => {
  f = await createFleet({ hosts: 3, services: () => fleetServiceYaml() });
  const [h1, h2, h3] = f.hosts as [FleetHost, FleetHost, FleetHost];
  front = h3;
  // h3 is the front: its one service balances h1 and h2 (targets named as the fleet file's hosts).
  await front.writeConfig([
    '  shop:',
    '    targets:',
    `      h1: "${h1.address}:${h1.port}"`,
    `      h2: "${h2.address}:${h2.port}"`,
    '    health: { interval: 200ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 2 }',
    '    drain_timeout: 5s',
  ].join('\n'));
  const reload = await front.cli(['reload']);
  assert.equal(reload.code, 0, `${reload.stdout}\n${reload.stderr}`);
  const fleetFile = fleetYaml(f, { hosts: 2, balancer: 'none', rollout: 'batch: 1\ncanary: 0\nbake: 0s' }).replace('  type: none', [
    '  type: baton',
    '  host: h3',
    '  service: shop',
    `  baton: ${JSON.stringify(front.batonCommand)}`,
    `  config: ${front.configFile}`,
    '  drain_timeout: 20s',
  ].join('\n'));
  await f.writeFleetFile(fleetFile);
  const v1 = await f.fleet(['deploy', 'web', await f.release('v1')]);
  assert.equal(v1.code, 0, `${v1.stdout}\n${v1.stderr}`);
  await waitUntil('both hosts in rotation at the front', async () => Object.values(await targets()).every((t) => t.inRotation), 10_000);
});

after(async () => {
  await f?.cleanup();
});

test('fleet drain / undrain with a front baton: the front sends the host nothing new, in flight finishes, 0 failed', async () => {
  const url = `http://${front.address}:${front.port}/`;
  const load = startLoad({ url, concurrency: 3, keepAlive: true, maxMs: 120_000 });
  const slow = startLoad({ url: `${url}slow?ms=3000`, concurrency: 4, keepAlive: true, maxRequests: 4 });
  await waitUntil('slow requests in flight on h1 through the front', async () => (await targets())['h1'].inflight > 0, 20_000);
  const d = await f.fleet(['drain', 'h1']);
  assert.equal(d.code, 0, `${d.stdout}\n${d.stderr}`);
  // Observed, not assumed: the drain returned once the front had nothing in flight to h1.
  assert.match(d.stdout, /h1: out of rotation; no request in flight after \d/);
  const t = await targets();
  assert.equal(t['h1'].state, 'drain');
  assert.equal(t['h1'].inflight, 0);
  assert.match(t['h1'].operator.reason, /baton fleet drain/);
  const at = t['h1'].requests;
  const seen = load.snapshot().total;
  await load.waitFor(seen + 100, 30_000);
  assert.equal((await targets())['h1'].requests, at, 'the front sent h1 new requests while drained');
  const slowRes = await slow.stop();
  assert.equal(slowRes.failed, 0, slowRes.errors.join(' | '));
  // The host's own drain state is left alone: the front is the one told.
  assert.equal((await f.hosts[0]!.status()).host.drain.mode, 'ready');

  const u = await f.fleet(['undrain', 'h1']);
  assert.equal(u.code, 0, `${u.stdout}\n${u.stderr}`);
  await waitUntil('h1 to get requests from the front again', async () => (await targets())['h1'].requests > at, 20_000);
  const res = await load.stop();
  assert.equal(res.failed, 0, `${res.failed} failed: ${res.errors.join(' | ')}`);
  assert.ok(res.ok > 100);
});

test('a rolling deploy with --drain behind a front baton: each host out, switched, back; 0 failed', async () => {
  const url = `http://${front.address}:${front.port}/`;
  const load = startLoad({ url, concurrency: 3, keepAlive: true, mix: [{ path: '/slow?ms=300', every: 5 }], maxMs: 180_000 });
  await load.waitFor(50, 20_000);
  const r = await f.fleet(['deploy', 'web', await f.release('v2'), '--drain']);
  const seen = load.snapshot().total;
  await load.waitFor(seen + 50, 30_000);
  const res = await load.stop();
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.equal(res.failed, 0, `${res.failed} failed: ${res.errors.join(' | ')}`);
  assert.ok((res.bodies['v1'] ?? 0) > 0 && (res.bodies['v2'] ?? 0) > 0, JSON.stringify(res.bodies));
  const t = await targets();
  for (const h of ['h1', 'h2']) {
    assert.equal(t[h].inRotation, true, `${h} back in rotation: ${JSON.stringify(t[h])}`);
    assert.equal(t[h].operator, null);
  }
  for (const h of f.hosts.slice(0, 2)) assert.match((await h.status('web')).services[0].currentRelease, /^v2-/);
});
