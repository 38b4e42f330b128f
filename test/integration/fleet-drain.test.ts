// Drain for maintenance: `baton fleet drain HOST` takes a host out of a real
// HAProxy (through the host's agent-check, or through HAProxy's runtime API
// reached over ssh) under load: HAProxy sends it no new request, the requests
// in flight on it finish, nothing fails; `undrain` puts it back.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createFleet, fleetServiceYaml, type FleetHost, type TestFleet } from '../helpers/fleet-hosts.ts';
import { fleetYaml } from '../helpers/fleet-file.ts';
import { startLoad } from '../helpers/load.ts';
import { waitUntil } from '../helpers/daemon.ts';

async function requestsOf(h: FleetHost): Promise<{ requests: number; inflight: number }> {
  const s = (await h.status('web')).services[0];
  return { requests: s.counters.requests, inflight: s.instances.reduce((a: number, i: { inflight: number }) => a + i.inflight, 0) };
}

async function haproxyStat(f: TestFleet, server: string, column: 'status' | 'weight'): Promise<string> {
  const csv = await f.haproxyCommand('show stat');
  const head = csv.split('\n')[0]!.replace(/^# /, '').split(',');
  const row = csv.split('\n').find((l) => l.startsWith(`${f.haproxy!.backend},${server},`));
  return row?.split(',')[head.indexOf(column)] ?? '?';
}
const haproxyStatus = (f: TestFleet, server: string): Promise<string> => haproxyStat(f, server, 'status');

async function drainScenario(via: 'agent' | 'runtime'): Promise<void> {
  const f = await createFleet({ hosts: 2, services: () => fleetServiceYaml(), haproxy: { agentCheck: via === 'agent' } });
  try {
    await f.writeFleetFile(fleetYaml(f, { balancer: via, rollout: 'batch: 2' }));
    const v1 = await f.fleet(['deploy', 'web', await f.release('v1')]);
    assert.equal(v1.code, 0, `${v1.stdout}\n${v1.stderr}`);
    const [h1, h2] = f.hosts as [FleetHost, FleetHost];
    const url = `${f.haproxy!.url}/`;
    const loads = [
      startLoad({ url, concurrency: 4, keepAlive: true, mix: [{ path: '/slow?ms=1500', every: 3 }], maxMs: 120_000 }),
      startLoad({ url, concurrency: 2, keepAlive: false, thinkMs: 5, maxMs: 120_000 }),
    ];
    // Slow requests in flight on h1 when the drain starts: they must finish.
    await waitUntil('slow requests in flight on h1', async () => (await requestsOf(h1)).inflight > 0, 20_000, 50);
    const d = await f.fleet(['drain', 'h1']);
    assert.equal(d.code, 0, `${d.stdout}\n${d.stderr}`);
    assert.match(d.stdout, /h1: out of rotation; no request in flight after/);
    assert.match(await haproxyStatus(f, 'h1'), /DRAIN/);
    const quiet = await requestsOf(h1);
    assert.equal(quiet.inflight, 0);
    // The load goes on (through h2 only): h1 gets no new request.
    const total = loads[0]!.snapshot().total + loads[1]!.snapshot().total;
    await Promise.all(loads.map((l) => l.waitFor(l.snapshot().total + 30, 30_000)));
    assert.ok(loads[0]!.snapshot().total + loads[1]!.snapshot().total >= total + 60);
    assert.equal((await requestsOf(h1)).requests, quiet.requests, 'h1 got new requests while drained');
    if (via === 'agent') assert.equal((await h1.status()).host.drain.mode, 'drain');

    const u = await f.fleet(['undrain', 'h1']);
    assert.equal(u.code, 0, `${u.stdout}\n${u.stderr}`);
    await waitUntil('HAProxy to send h1 requests again', async () => (await requestsOf(h1)).requests > quiet.requests + 20, 20_000, 100);
    assert.equal(await haproxyStatus(f, 'h1'), 'UP');
    if (via === 'agent') {
      // A host canary at a fixed share: the agent answers "ready up 10%", HAProxy scales the server's weight.
      const w = await f.fleet(['undrain', 'h1', '--weight', '10%']);
      assert.equal(w.code, 0, `${w.stdout}\n${w.stderr}`);
      await waitUntil('HAProxy to weigh h1 at 10%', async () => (await haproxyStat(f, 'h1', 'weight')) === '10', 10_000, 100);
      assert.equal((await f.fleet(['undrain', 'h1'])).code, 0);
      await waitUntil('HAProxy to weigh h1 at 100% again', async () => (await haproxyStat(f, 'h1', 'weight')) === '100', 10_000, 100);
    }
    const results = await Promise.all(loads.map((l) => l.stop()));
    for (const r of results) assert.equal(r.failed, 0, `failed requests: ${r.errors.join('; ')}`);
    console.log(`# drain via ${via}: ${results.reduce((a, r) => a + r.total, 0)} requests through HAProxy (1 in 3 keep-alive requests takes 1.5 s), 0 failed; the drain waited ${/after (\S+)/.exec(d.stdout)?.[1]}; h2 served ${(await requestsOf(h2)).requests}`);
  } finally {
    await f.cleanup();
  }
}

test('drain for maintenance through the agent-check: no new requests, in-flight finish, 0 failed; undrain restores', () => drainScenario('agent'));

test('a rolling deploy with --drain behind a balancer that polls the readiness URL: each host drained, switched, put back; 0 failed', async () => {
  const f = await createFleet({ hosts: 2, services: () => fleetServiceYaml(), haproxy: { agentCheck: false } });
  try {
    await f.writeFleetFile(fleetYaml(f, { balancer: 'readiness', rollout: 'batch: 1' }));
    assert.equal((await f.fleet(['deploy', 'web', await f.release('v1')])).code, 0);
    const url = `${f.haproxy!.url}/`;
    const loads = [
      startLoad({ url, concurrency: 3, keepAlive: true, mix: [{ path: '/slow?ms=500', every: 4 }], maxMs: 120_000 }),
      startLoad({ url, concurrency: 1, keepAlive: false, thinkMs: 5, maxMs: 120_000 }),
    ];
    await Promise.all(loads.map((l) => l.waitFor(20, 20_000)));
    const r = await f.fleet(['deploy', 'web', await f.release('v2'), '--drain']);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    for (const h of ['h1', 'h2']) {
      assert.match(r.stdout, new RegExp(`${h} +draining`));
      assert.match(r.stdout, new RegExp(`${h}: drained from the balancer in \\S+`));
    }
    // Back in rotation: HAProxy sees both hosts up and ready.
    for (const h of f.hosts) assert.equal((await h.status()).host.drain.mode, 'ready');
    await waitUntil('HAProxy to see both hosts up again', async () => (await haproxyStatus(f, 'h1')) === 'UP' && (await haproxyStatus(f, 'h2')) === 'UP', 20_000, 100);
    const results = await Promise.all(loads.map((l) => l.stop()));
    for (const res of results) {
      assert.equal(res.failed, 0, `failed requests: ${res.errors.join('; ')}`);
      assert.ok((res.bodies['v2'] ?? 0) > 0);
    }
    console.log(`# rolling deploy with --drain (readiness URL): ${results.reduce((a, x) => a + x.total, 0)} requests, 0 failed; ${/phases: (.*)/.exec(r.stdout)?.[1]}`);
  } finally {
    await f.cleanup();
  }
});

test('drain for maintenance through HAProxy\'s runtime API over ssh: sessions observed at 0, 0 failed; undrain restores', () => drainScenario('runtime'));
