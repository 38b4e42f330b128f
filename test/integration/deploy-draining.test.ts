// What happens while the old release drains: `--until switched` returns at the
// switch, and the operator can roll back (or deploy again) at once.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createDaemon, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad, type LoadResult } from '../helpers/load.ts';

let d: TestDaemon;
before(async () => {
  // A long drain: an open WebSocket holds the old instances for up to 30 s.
  d = await createDaemon({ services: serviceYaml({ instances: 2 }).replace('drain_timeout: 5s', 'drain_timeout: 30s') });
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
});
after(async () => {
  await d?.cleanup();
});

function assertClean(r: LoadResult, label: string): void {
  assert.equal(r.failed, 0, `${label}: ${r.failed} of ${r.total} requests failed: ${r.errors.join('; ')}`);
  assert.ok(r.total > 20, `${label}: only ${r.total} requests ran`);
}

function openSocket(): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(d.url.replace('http', 'ws') + '/ws');
    const t = setTimeout(() => reject(new Error('no WebSocket greeting within 5 s')), 5000);
    ws.once('message', () => {
      clearTimeout(t);
      resolve(ws);
    });
    ws.once('error', reject);
  });
}

const lines = (stdout: string): any[] => stdout.trim().split('\n').map((l) => JSON.parse(l));

test('deploy --until switched returns at the switch while a WebSocket holds the old release; status shows the drain', async (t) => {
  const ws = await openSocket();
  t.after(() => ws.terminate());
  const load = startLoad({ url: d.url + '/', concurrency: 3, maxMs: 60_000 });
  t.after(() => load.stop());
  await load.waitFor(30, 10_000);
  const r = await d.cli(['deploy', 'web', await d.release('v2'), '--until', 'switched', '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const out = lines(r.stdout);
  const result = out.at(-1);
  assert.equal(result.type, 'result');
  assert.equal(result.outcome.state, 'switched');
  assert.ok(out.some((l) => l.type === 'event' && /traffic switched to .*v2/.test(l.event.message)), 'the switch event was streamed');
  assert.ok(!out.some((l) => l.type === 'event' && /old instances drained/.test(l.event.message)), 'returned before the drain ended');

  const s = (await d.status('web')).services[0];
  assert.match(s.currentRelease, /v2/);
  assert.equal(s.instances.filter((i: any) => i.role === 'draining' && /v1/.test(i.release)).length, 2, JSON.stringify(s.instances));
  assert.equal(s.draining.length, 1);
  assert.match(s.draining[0].release, /v1/);
  assert.equal(s.draining[0].deploymentId, result.outcome.deploymentId);
  const human = await d.cli(['status', 'web']);
  assert.match(human.stdout, /draining: .*v1.* \(deployment #\d+, 1 WebSocket/);

  const n = load.snapshot().total;
  await load.waitFor(n + 30, 10_000);
  assertClean(await load.stop(), 'deploy --until switched');
});

test('deploy --steps: a bad plan is refused with a clear message and changes nothing', async () => {
  const before = (await d.status('web')).services[0].currentRelease;
  const r = await d.cli(['deploy', 'web', await d.release('v9'), '--steps', '50,10']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /--steps "50,10": weights must grow: 10 after 50/);
  const r2 = await d.cli(['deploy', 'web', await d.release('v9'), '--steps', '10', '--strategy', 'blue_green']);
  assert.equal(r2.code, 2);
  assert.match(r2.stderr, /--steps is a canary plan/);
  assert.equal((await d.status('web')).services[0].currentRelease, before);
});
