// Ctrl-C mid-rollout pauses it in a consistent state (the host in progress
// finishes its step, the record says where each host stands); `resume`
// finishes it, `abort` reverts what was switched; a second operator is
// stopped by the fleet lock, which names its holder. Under load through a
// real HAProxy, 0 failed requests.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createFleet, fleetServiceYaml, type TestFleet } from '../helpers/fleet-hosts.ts';
import { fleetYaml } from '../helpers/fleet-file.ts';
import { startLoad, type RunningLoad } from '../helpers/load.ts';
import { waitUntil } from '../helpers/daemon.ts';

let f: TestFleet;
let loads: RunningLoad[] = [];

before(async () => {
  f = await createFleet({ hosts: 3, services: () => fleetServiceYaml(), haproxy: { agentCheck: true } });
  await f.writeFleetFile(fleetYaml(f, { rollout: 'batch: 1\ncanary: 1\nbake: 2s' }));
  const r = await f.fleet(['deploy', 'web', await f.release('v1'), '--bake', '0s', '--batch', '3']);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  const url = `${f.haproxy!.url}/`;
  loads = [startLoad({ url, concurrency: 2, keepAlive: true, maxMs: 170_000 }), startLoad({ url, concurrency: 1, keepAlive: false, thinkMs: 10, maxMs: 170_000 })];
});

after(async () => {
  const results = await Promise.all(loads.map((l) => l.stop()));
  await f?.cleanup();
  for (const r of results) {
    assert.equal(r.failed, 0, `failed requests: ${r.errors.join('; ')}`);
    assert.ok(r.total > 100, `only ${r.total} requests went through HAProxy`);
  }
  console.log(`# ${results.reduce((a, r) => a + r.total, 0)} requests through HAProxy across pause, resume, abort: 0 failed`);
});

async function releases(): Promise<string[]> {
  return Promise.all(f.hosts.map(async (h) => ((await h.status('web')).services[0].currentRelease as string).replace(/^(v\d+)-.*$/, '$1')));
}

/** Start a rollout and press Ctrl-C while the canary bakes. */
async function interruptedRollout(version: string): Promise<void> {
  const run = f.spawnFleet(['deploy', 'web', await f.release(version)]);
  await waitUntil('the canary host to bake', () => {
    if (run.proc.exitCode !== null) throw new Error(`the rollout ended early:\n${run.stdout()}`);
    return /h1 +baking/.test(run.stdout());
  }, 60_000, 50);
  run.proc.kill('SIGINT');
  const r = await run.done;
  assert.equal(r.code, 130, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /interrupted: pausing once the hosts in progress have finished their step/);
  assert.match(r.stdout, /paused: no host is in progress/);
  // The canary finished its step (baked, done); nobody else was touched.
  assert.match(r.stdout, /h1 +done/);
  assert.doesNotMatch(r.stdout, /h2 +building/);
}

test('Ctrl-C pauses after the canary; another operator is refused by the lock; resume finishes', async () => {
  await interruptedRollout('v2');
  assert.deepEqual(await releases(), ['v2', 'v1', 'v1']);
  const rec = JSON.parse(readFileSync(path.join(f.stateHome, 'baton', 'fleet', 'test--web.json'), 'utf8'));
  assert.equal(rec.status, 'paused');
  assert.deepEqual(Object.fromEntries(Object.entries(rec.hosts).map(([n, h]) => [n, (h as { phase: string }).phase])), { h1: 'done', h2: 'shipped', h3: 'shipped' });

  const other = await f.fleet(['deploy', 'web', await f.release('v9')], { env: { XDG_STATE_HOME: path.join(f.dir, 'other-operator'), USER: 'alice' } });
  assert.equal(other.code, 1);
  assert.match(other.stderr, new RegExp(`the fleet test is locked by root@\\S+ \\(rollout ${rec.id}, since \\S+\\); lock .*fleet\\.lock on h1`));
  assert.deepEqual(await releases(), ['v2', 'v1', 'v1'], 'the refused operator changed nothing');

  const r = await f.fleet(['resume', 'web']);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.deepEqual(await releases(), ['v2', 'v2', 'v2']);
  assert.ok(!existsSync(path.join(f.dir, 'h1', 'fleet.lock')), 'the lock is released once the rollout is done');
});

test('Ctrl-C, then abort: the switched canary goes back, the others were never touched', async () => {
  await interruptedRollout('v3');
  assert.deepEqual(await releases(), ['v3', 'v2', 'v2']);
  const r = await f.fleet(['abort', 'web']);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /h1 +reverted/);
  assert.match(r.stdout, /rollout \S+ aborted/);
  assert.deepEqual(await releases(), ['v2', 'v2', 'v2']);
  const again = await f.fleet(['resume', 'web']);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /is aborted: nothing to resume/);
  assert.ok(!existsSync(path.join(f.dir, 'h1', 'fleet.lock')));
});

test('a host lost mid-rollout (its daemon killed while starting the new release): the rollout stops and the switched host goes back', async () => {
  const h2 = f.hosts[1]!;
  // h2's new release never listens (its start file is never made): its daemon is killed while it starts, however slow the machine.
  await h2.writeConfig(fleetServiceYaml({ extra: `env: { APP_START_FILE: ${JSON.stringify(path.join(f.dir, 'never'))} }` }));
  assert.equal((await h2.cli(['reload'])).code, 0);
  const run = f.spawnFleet(['deploy', 'web', await f.release('v4'), '--bake', '0s']);
  await waitUntil('h2 to start the new release', () => {
    if (run.proc.exitCode !== null) throw new Error(`the rollout ended early:\n${run.stdout()}`);
    return /h2 +starting/.test(run.stdout());
  }, 60_000, 50);
  await h2.killDaemon();
  const r = await run.done;
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /h1 +reverted/);
  assert.match(r.stdout, /h2 +failed/);
  assert.match(r.stdout, /h3 +untouched/);
  await h2.startDaemon();
  await h2.writeConfig(fleetServiceYaml());
  assert.equal((await h2.cli(['reload'])).code, 0);
  // The restarted daemon finds the deployment interrupted before its switch: h2 still serves v2.
  await waitUntil('every host back on v2', async () => (await releases()).every((v) => v === 'v2'), 20_000, 200);
});

test('a lock left by another operator: deploy refused naming the holder, unlock shows it, unlock --force removes it', async () => {
  const lock = path.join(f.dir, 'h1', 'fleet.lock');
  await mkdir(lock);
  await writeFile(path.join(lock, 'holder'), JSON.stringify({ rollout: 'gone-1', operator: 'bob@laptop', since: Date.parse('2026-11-30T12:00:00Z') }) + '\n');
  const d = await f.fleet(['deploy', 'web', await f.release('v5')]);
  assert.equal(d.code, 1);
  assert.match(d.stderr, /the fleet test is locked by bob@laptop \(rollout gone-1, since 2026-11-30T12:00:00\.000Z\)/);
  const show = await f.fleet(['unlock']);
  assert.equal(show.code, 1);
  assert.match(show.stdout, /locked by bob@laptop .*`baton fleet unlock --force` removes the lock/);
  assert.ok(existsSync(lock));
  const forced = await f.fleet(['unlock', '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stdout, /removed the lock of bob@laptop/);
  assert.ok(!existsSync(lock));
  assert.equal((await f.fleet(['unlock'])).stdout, 'the fleet test is not locked\n');
});
