// The warm standby (the previous release kept running for an instant rollback)
// is stopped once `standby:` has elapsed; the release stays the rollback target.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isGroupAlive } from '../../src/core/proc.ts';
import { createDaemon, serviceYaml, waitUntil } from '../helpers/daemon.ts';
import { startLoad } from '../helpers/load.ts';

test('the standby group is stopped when standby: elapses, traffic unaffected; rollback still reaches it', async (t) => {
  const d = await createDaemon({ services: serviceYaml({ extra: 'standby: 8s' }) });
  t.after(() => d.cleanup());
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
  const load = startLoad({ url: d.url + '/', concurrency: 4, maxMs: 90_000 });
  await load.waitFor(50, 10_000);
  assert.equal((await d.cli(['deploy', 'web', await d.release('v2')])).code, 0);

  const s = (await d.status('web')).services[0];
  const standby = s.instances.filter((i: any) => i.role === 'standby');
  assert.equal(standby.length, 2, JSON.stringify(s.instances));
  assert.ok(typeof s.standbyWarmUntil === 'number', 'status says until when the standby stays warm');
  await waitUntil('the standby instances to be stopped', async () => (await d.status('web')).services[0].instances.every((i: any) => i.role !== 'standby'), 20_000, 100);
  assert.ok(Date.now() >= s.standbyWarmUntil, 'not stopped before its time');
  for (const i of standby) await waitUntil(`standby group ${i.pid} to be gone`, () => !isGroupAlive(i.pid), 10_000);
  const after = (await d.status('web')).services[0];
  assert.match(after.standbyRelease, /v1/, 'the release stays the rollback target');
  assert.equal(after.standbyWarmUntil, null);

  const seen = load.snapshot().total;
  await load.waitFor(seen + 100, 10_000);
  await load.waitForEach(2, 10_000);
  const result = await load.stop();
  assert.equal(result.failed, 0, result.errors.join('; '));
  assert.deepEqual(Object.keys(result.bodies).sort(), ['v1', 'v2'], 'the load saw v1, then v2');
  for (const seq of result.sequences) assert.deepEqual(seq, ['v1', 'v2'], 'no client went back to the standby');

  // Rolling back now starts the release again (no warm instances to switch to).
  const r = await d.cli(['rollback', 'web']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v1');
});
