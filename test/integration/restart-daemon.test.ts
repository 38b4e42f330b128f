// The daemon can die: instances outlive it, and a new daemon re-adopts them
// (same pids), keeps the state, and serves again.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createDaemon, isGone, waitUntil, type TestDaemon } from '../helpers/daemon.ts';

let d: TestDaemon;
before(async () => {
  d = await createDaemon();
});
after(async () => {
  await d?.cleanup();
});

test('kill -9 of the daemon and a restart keep the state and the same instance pids', async () => {
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
  assert.equal((await d.cli(['deploy', 'web', await d.release('v2')])).code, 0);
  const before = (await d.status('web')).services[0];
  const pids = before.instances.map((i: any) => i.pid).sort();
  assert.equal(pids.length, 4, 'two current and two standby instances');

  await d.kill9();
  // The instances keep running without the daemon.
  for (const pid of pids) process.kill(pid, 0);
  await d.start();

  const after = (await d.status('web')).services[0];
  assert.equal(after.currentRelease, before.currentRelease);
  assert.equal(after.standbyRelease, before.standbyRelease);
  assert.deepEqual(after.instances.map((i: any) => i.pid).sort(), pids);
  await waitUntil('re-adopted instances to pass health checks', async () => {
    const s = (await d.status('web')).services[0];
    return s.instances.filter((i: any) => i.role === 'current' && i.healthy).length === 2;
  }, 10_000);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v2');
  // And the re-adopted standby still gives an instant rollback.
  const r = await d.cli(['rollback', 'web']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v1');
});

test('a deployment interrupted before the switch is marked failed and its instances stopped', async () => {
  // It never listens (its start file is never made): the daemon is surely killed before the switch, however busy the machine.
  const slow = await d.release('v3', { APP_START_FILE: path.join(d.dir, 'never') });
  const deploy = d.cli(['deploy', 'web', slow]);
  let incoming: number[] = [];
  await waitUntil('the deploy to be starting instances', async () => {
    const s = (await d.status('web')).services[0];
    incoming = s.instances.filter((i: any) => i.role === 'incoming').map((i: any) => i.pid);
    return incoming.length === 2;
  }, 10_000);
  await d.kill9();
  await deploy.catch(() => {});
  await d.start();
  const h = JSON.parse((await d.cli(['history', 'web', '--json'])).stdout);
  assert.equal(h[0].state, 'failed');
  assert.match(h[0].error, /interrupted by a daemon restart/);
  for (const pid of incoming) {
    await waitUntil(`stray instance ${pid} to be stopped`, () => isGone(pid), 10_000);
  }
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v1');
});

test('a daemon killed during a canary rollout comes back on the stable release', async () => {
  const before = (await d.status('web')).services[0];
  const deploy = d.cli(['deploy', 'web', await d.release('v5'), '--strategy', 'canary']);
  await waitUntil('the canary to take traffic', async () => (await d.status('web')).services[0].canary?.weight > 0, 20_000, 100);
  const canaryPids = (await d.status('web')).services[0].instances.filter((i: any) => i.role === 'canary').map((i: any) => i.pid);
  assert.equal(canaryPids.length, 2);
  await d.kill9();
  await deploy.catch(() => {});
  await d.start();
  const after = (await d.status('web')).services[0];
  assert.equal(after.currentRelease, before.currentRelease);
  assert.equal(after.canary, null);
  const h = JSON.parse((await d.cli(['history', 'web', '--json'])).stdout)[0];
  assert.equal(h.state, 'failed');
  for (const pid of canaryPids) await waitUntil(`canary instance ${pid} to be stopped`, () => isGone(pid), 10_000);
  for (let i = 0; i < 20; i++) assert.equal((await (await fetch(d.url)).text()).trim(), 'v1');
});
