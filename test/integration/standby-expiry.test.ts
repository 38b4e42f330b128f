// The warm standby (the previous release kept running for an instant rollback)
// is stopped once `standby:` has elapsed; the release stays the rollback target.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isGroupAlive } from '../../src/core/proc.ts';
import { createDaemon, serviceYaml, waitUntil } from '../helpers/daemon.ts';
import { startLoad } from '../helpers/load.ts';

test('the standby group is stopped when standby: elapses, traffic unaffected; rollback still reaches it', async (t) => {
  const d = await createDaemon({ services: serviceYaml({ extra: 'standby: 2s' }) });
  t.after(() => d.cleanup());
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
  // v1's instances become the standby.
  const standby = (await d.status('web')).services[0].instances.map((i: any) => i.pid);
  assert.equal(standby.length, 2);
  const load = startLoad({ url: d.url + '/', concurrency: 4, maxMs: 90_000 });
  t.after(() => load.stop());
  await load.waitFor(50, 10_000);
  const deployed = await d.cli(['deploy', 'web', await d.release('v2')]);
  assert.equal(deployed.code, 0, deployed.stdout + deployed.stderr);
  assert.match(deployed.stdout, /kept running as warm standby for 2\.0s/);

  await waitUntil('the standby instances to be stopped', async () => (await d.status('web')).services[0].instances.every((i: any) => i.role !== 'standby'), 20_000, 100);
  for (const pid of standby) await waitUntil(`standby group ${pid} to be gone`, () => !isGroupAlive(pid), 10_000);
  // Not before its time: the daemon's own clock, from the switch (the standby period starts after the drain, later still).
  const log = (await d.daemonLog()).split('\n');
  const at = (re: RegExp): number => {
    const line = log.find((l) => re.test(l));
    assert.ok(line, `the daemon log has a line matching ${re}`);
    return Date.parse(JSON.parse(line).time);
  };
  const sinceSwitch = at(/"msg":"standby period over/) - at(/"msg":"traffic switched to [^"]*v2/);
  assert.ok(sinceSwitch >= 2000, `the standby was stopped ${sinceSwitch} ms after the switch, before standby: 2s`);
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
