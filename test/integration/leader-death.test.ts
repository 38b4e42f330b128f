// kill -9 of a gunicorn-like master under GET load: the instance leaves the
// rotation at once, its orphaned worker finishes the response it was sending,
// a replacement starts, and no request fails.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { request } from 'undici';
import { isGroupAlive } from '../../src/core/proc.ts';
import { createDaemon, waitUntil, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad } from '../helpers/load.ts';
import { FORKING_LEADER, fixtureRelease } from '../fixtures/fixture-release.ts';

let d: TestDaemon;
let leaders: number[] = [];
before(async () => {
  d = await createDaemon({
    services: [
      '  web:',
      `    command: exec "${process.execPath}" server.mjs`,
      '    instances: 2',
      '    health: { path: /healthz, interval: 200ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 2, start_timeout: 10s }',
      '    drain_timeout: 10s',
      '    standby: 0s',
    ].join('\n'),
  });
  const r = await d.cli(['deploy', 'web', await fixtureRelease(d, FORKING_LEADER, 'v1')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
});
after(async () => {
  await d?.cleanup();
  // A killed leader's group is not in the store any more: make sure nothing of it is left.
  for (const pid of leaders) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

test('kill -9 of the leader under GET load: the response in flight completes, 0 failed', async () => {
  const stream = await request(d.url + '/stream');
  assert.equal(stream.statusCode, 200);
  const body = stream.body.text();
  let s = (await d.status('web')).services[0];
  const serving = s.instances.find((i: any) => i.inflight > 0);
  assert.ok(serving, `an instance is sending the response: ${JSON.stringify(s.instances)}`);
  leaders = s.instances.map((i: any) => i.pid);

  const load = startLoad({ url: d.url + '/', concurrency: 4, maxMs: 60_000 });
  await load.waitFor(100, 10_000);
  process.kill(serving.pid, 'SIGKILL');
  assert.equal((await body).trim(), 'start\nv1', 'the orphaned worker finished the response');

  await waitUntil('a replacement instance to be healthy', async () => {
    s = (await d.status('web')).services[0];
    const healthy = s.instances.filter((i: any) => i.role === 'current' && i.healthy);
    return healthy.length === 2 && !healthy.some((i: any) => i.pid === serving.pid);
  }, 20_000, 100);
  const seen = load.snapshot().total;
  await load.waitFor(seen + 100, 10_000);
  const result = await load.stop();
  assert.equal(result.failed, 0, result.errors.join('; '));
  assert.deepEqual(Object.keys(result.bodies), ['v1']);
  await waitUntil('the dead leader\'s group to be gone', () => !isGroupAlive(serving.pid), 15_000);
});

test('shutdown --stop-instances also ends the workers of a leader that died', async (t) => {
  const d2 = await createDaemon({
    services: [
      '  web:',
      `    command: exec "${process.execPath}" server.mjs`,
      '    instances: 1',
      '    health: { path: /healthz, interval: 200ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 2, start_timeout: 10s }',
      // Long: only the shutdown can end the worker before it.
      '    drain_timeout: 60s',
      '    standby: 0s',
    ].join('\n'),
  });
  t.after(() => d2.cleanup());
  // This worker ignores its leader's death: only a signal ends it.
  const r = await d2.cli(['deploy', 'web', await fixtureRelease(d2, FORKING_LEADER, 'v1', { FORKING_LEADER_STAY: '1' })]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const [inst] = (await d2.status('web')).services[0].instances;
  t.after(() => {
    try {
      process.kill(-inst.pid, 'SIGKILL');
    } catch {
      // gone
    }
  });
  process.kill(inst.pid, 'SIGKILL');
  await waitUntil('the daemon to see the leader exit', async () => /instance exited unexpectedly/.test(await d2.daemonLog()), 10_000);
  assert.ok(isGroupAlive(inst.pid), 'the worker is still running');
  const exited = new Promise((resolve) => d2.proc.once('exit', resolve));
  assert.equal((await d2.cli(['shutdown', '--stop-instances'])).code, 0);
  await exited;
  assert.equal(isGroupAlive(inst.pid), false, 'the daemon stopped the dead leader\'s worker before it exited');
  const log = await readFile(path.join(d2.dir, 'state', 'logs', 'web', `${inst.id}.log`), 'utf8');
  assert.match(log, /worker: SIGTERM/, 'the worker was stopped with the stop signal, not left to the drain timeout');
});
