// Blue/green deploy, rollback and restart under load: zero failed requests,
// the right versions seen, every client moving old → new exactly once.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createDaemon, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad, type LoadResult } from '../helpers/load.ts';

let d: TestDaemon;
before(async () => {
  d = await createDaemon();
});
after(async () => {
  await d?.cleanup();
});

function assertClean(r: LoadResult, label: string): void {
  assert.equal(r.failed, 0, `${label}: ${r.failed} of ${r.total} requests failed: ${r.errors.join('; ')}`);
  assert.ok(r.total > 50, `${label}: only ${r.total} requests ran`);
}

/** Every client saw `from` then `to`, never back. */
function assertMovedOnce(r: LoadResult, from: string, to: string): void {
  for (const seq of r.sequences) {
    const s = seq.filter((x) => x === from || x === to);
    assert.ok(s.length >= 1 && s.length <= 2, `a client saw ${seq.join(' → ')}`);
    if (s.length === 2) assert.deepEqual(s, [from, to], `a client saw ${seq.join(' → ')}`);
    else assert.ok(s[0] === from || s[0] === to);
  }
}

test('first deploy brings the service up', async () => {
  const r = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /deploy #1 of web to .*v1.* done/);
  const res = await fetch(d.url);
  assert.equal((await res.text()).trim(), 'v1');
  const s = await d.status('web');
  assert.equal(s.services[0].instances.filter((i: any) => i.role === 'current' && i.healthy).length, 2);
});

test('deploy v2 under keep-alive load: 0 failed, each client v1 → v2 once', async () => {
  const v2 = await d.release('v2');
  const load = startLoad({ url: d.url + '/', concurrency: 4, maxMs: 60_000 });
  await load.waitFor(100, 10_000);
  const r = await d.cli(['deploy', 'web', v2]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const n = load.snapshot().total;
  await load.waitFor(n + 100, 10_000);
  await load.waitForEach(2, 10_000);
  const res = await load.stop();
  assertClean(res, 'deploy');
  assert.ok((res.bodies['v1'] ?? 0) > 0 && (res.bodies['v2'] ?? 0) > 0, JSON.stringify(res.bodies));
  assert.deepEqual(Object.keys(res.bodies).sort(), ['v1', 'v2']);
  assertMovedOnce(res, 'v1', 'v2');
  for (const seq of res.sequences) assert.equal(seq.at(-1), 'v2');
  assert.match(r.stdout, /request\(s\) answered during the deploy: 0 failed in baton/);
  const s = await d.status('web');
  const svc = s.services[0];
  assert.match(svc.currentRelease, /v2/);
  assert.match(svc.standbyRelease, /v1/);
  assert.ok(svc.standbyWarmUntil > Date.now(), 'the previous release is kept warm');
  assert.equal(svc.instances.filter((i: any) => i.role === 'standby').length, 2);
});

test('rollback to the warm standby under load: 0 failed, an instant switch to the standby\'s own processes', async () => {
  const standbyPids = (await d.status('web')).services[0].instances.filter((i: any) => i.role === 'standby').map((i: any) => i.pid).sort();
  assert.equal(standbyPids.length, 2);
  const load = startLoad({ url: d.url + '/', concurrency: 4, keepAlive: false, maxMs: 60_000 });
  await load.waitFor(50, 10_000);
  const r = await d.cli(['rollback', 'web', '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const outcome = lines.at(-1).outcome;
  assert.equal(outcome.state, 'done');
  assert.equal(outcome.kind, 'rollback');
  assert.equal(typeof outcome.switchAfterMs, 'number');
  assert.ok(lines.some((l: any) => l.type === 'event' && /warm standby: reusing its 2 running instance/.test(l.event.message)), 'the rollback reused the standby');
  const serving = (await d.status('web')).services[0].instances.filter((i: any) => i.role === 'current').map((i: any) => i.pid).sort();
  assert.deepEqual(serving, standbyPids, 'the standby\'s processes serve, nothing was restarted');
  const n = load.snapshot().total;
  await load.waitFor(n + 50, 10_000);
  await load.waitForEach(2, 10_000);
  const res = await load.stop();
  assertClean(res, 'rollback');
  assertMovedOnce(res, 'v2', 'v1');
  for (const seq of res.sequences) assert.equal(seq.at(-1), 'v1');
});

test('restart under load: 0 failed, new processes, same release', async () => {
  const before = (await d.status('web')).services[0];
  const oldPids = before.instances.filter((i: any) => i.role === 'current').map((i: any) => i.pid);
  const load = startLoad({ url: d.url + '/', concurrency: 4, maxMs: 60_000 });
  await load.waitFor(50, 10_000);
  const r = await d.cli(['restart', 'web']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const res = await load.stop();
  assertClean(res, 'restart');
  assert.deepEqual(Object.keys(res.bodies), ['v1']);
  const after = (await d.status('web')).services[0];
  assert.equal(after.currentRelease, before.currentRelease);
  const newPids = after.instances.filter((i: any) => i.role === 'current').map((i: any) => i.pid);
  assert.equal(newPids.length, 2);
  for (const p of newPids) assert.ok(!oldPids.includes(p), 'restart started new processes');
});

test('a request in flight across the switch completes on the old release', async () => {
  const v3 = await d.release('v3');
  // Held by the app until the switch is seen (a fixed 2 s request could end before it on a slow machine, and prove nothing).
  const go = path.join(d.dir, 'slow-request-may-end');
  let settled = false;
  const slow = fetch(`${d.url}/wait?file=${encodeURIComponent(go)}`).then(async (r) => ({ status: r.status, body: (await r.text()).trim() }));
  void slow.finally(() => (settled = true)).catch(() => undefined);
  await waitUntil('the held request to reach an instance', async () => {
    const s = await d.status('web');
    return s.services[0].instances.some((i: any) => i.inflight > 0);
  }, 5_000);
  const deploy = d.cli(['deploy', 'web', v3]);
  try {
    await waitUntil('the switch to v3', async () => /v3/.test((await d.status('web')).services[0].currentRelease ?? ''), 60_000);
    assert.equal(settled, false, 'the held request was still in flight at the switch');
  } finally {
    await writeFile(go, '');
  }
  assert.deepEqual(await slow, { status: 200, body: 'v1' });
  const r = await deploy;
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v3');
});

test('a second deploy, or a rollback, while one starts is refused with a clear message, a log line and a history entry', async () => {
  // v4 listens only once both refusals are in: the first deploy is surely still starting when they come.
  const mayStart = path.join(d.dir, 'v4-may-start');
  const v4 = await d.release('v4', { APP_START_FILE: mayStart });
  const first = d.cli(['deploy', 'web', v4]);
  let running = 0;
  await waitUntil('the first deploy to be starting', async () => {
    const h = JSON.parse((await d.cli(['history', 'web', '--json'])).stdout)[0];
    running = h.seq;
    return h.state === 'starting' || h.state === 'verifying';
  }, 10_000);
  const v5 = await d.release('v5');
  const [second, rollback] = await Promise.all([d.cli(['deploy', 'web', v5]), d.cli(['rollback', 'web'])]);
  assert.equal(second.code, 1);
  assert.match(second.stderr, new RegExp(`a deployment of web is already running \\(#${running}\\)`), 'names the running deployment by its number in the service');
  assert.equal(rollback.code, 1);
  assert.match(rollback.stderr, /a deployment of web is already running/);
  await writeFile(mayStart, '');
  assert.equal((await first).code, 0);

  const h = JSON.parse((await d.cli(['history', 'web', '--json'])).stdout);
  const refused = h.filter((x: any) => x.state === 'refused');
  assert.deepEqual(refused.map((x: any) => x.kind).sort(), ['deploy', 'rollback'], 'both refusals are in the history');
  for (const x of refused) assert.match(x.error, /already running/);
  assert.ok(refused.every((x: any) => x.finishedAt !== null));
  const text = await d.cli(['history', 'web']);
  assert.match(text.stdout, /rollback\s+refused/);
  const log = await d.daemonLog();
  assert.match(log, /"msg":"rollback refused"[^\n]*"service":"web"/);
  assert.match(log, /"msg":"deploy refused"[^\n]*"service":"web"/);
});

test('releases and history list what happened', async () => {
  const rel = await d.cli(['releases', 'web', '--json']);
  assert.equal(rel.code, 0, rel.stderr);
  const rs = JSON.parse(rel.stdout);
  assert.ok(rs.some((r: any) => r.current && /v4/.test(r.id)));
  const h = JSON.parse((await d.cli(['history', 'web', '--json'])).stdout).filter((x: any) => x.state !== 'refused');
  assert.deepEqual(h.slice(0, 6).map((x: any) => x.kind), ['deploy', 'deploy', 'restart', 'rollback', 'deploy', 'deploy']);
  assert.ok(h.every((x: any) => x.state === 'done'));
  assert.ok(h[0].events.some((e: any) => e.step === 'shifting'));
  const text = await d.cli(['history', 'web']);
  assert.match(text.stdout, /rollback\s+done/);
});

test('deployments are numbered per service: two services each get 1, 2, 3', async (t) => {
  const two = await createDaemon({
    services: [serviceYaml({ name: 'web', instances: 1, extra: 'hosts: [web.test]' }), serviceYaml({ name: 'api', instances: 1, extra: 'hosts: [api.test]' })].join('\n'),
  });
  t.after(() => two.cleanup());
  // Interleaved, so that the store's global ids (1, 3, 5 and 2, 4, 6) differ from the numbers shown.
  for (const n of [1, 2, 3]) {
    for (const svc of ['web', 'api']) {
      const r = await two.cli(['deploy', svc, await two.release(`${svc}${n}`)]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, new RegExp(`preparing +deploy ${svc}#${n}: `), 'the first line names the deployment');
      assert.match(r.stdout, new RegExp(`✓ deploy #${n} of ${svc} to \\S*${svc}${n}\\S* done`), 'the summary names the deployment');
    }
  }
  const ids = new Set<number>();
  for (const svc of ['web', 'api']) {
    const json = await two.cli(['history', svc, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const h = JSON.parse(json.stdout);
    assert.deepEqual(h.map((x: any) => x.seq), [3, 2, 1], `${svc}'s deployments are numbered 1, 2, 3`);
    assert.deepEqual(h.map((x: any) => x.toRelease.match(new RegExp(`${svc}\\d`))?.[0]), [`${svc}3`, `${svc}2`, `${svc}1`]);
    for (const x of h) ids.add(x.id);

    const text = await two.cli(['history', svc]);
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.trim().split('\n');
    assert.match(lines[0]!, /^DEPLOYMENT\s+KIND/);
    assert.deepEqual(lines.slice(1).map((l) => l.split(/\s+/)[0]), ['#3', '#2', '#1'], text.stdout);

    for (const name of ['2', '#2', `${svc}#2`]) {
      const one = await two.cli(['history', svc, name]);
      assert.equal(one.code, 0, one.stderr);
      assert.match(one.stdout, new RegExp(`^deployment #2: deploy of ${svc}, \\S*${svc}1\\S* → \\S*${svc}2\\S*, done\\n`), `${svc} ${name}`);
    }
  }
  assert.equal(ids.size, 6, 'the internal ids stay global and unique');
  const other = await two.cli(['history', 'api', 'web#2']);
  assert.equal(other.code, 2, other.stdout + other.stderr);
  assert.match(other.stderr, /DEPLOYMENT must be a number of api's deployments .*got "web#2"/);
  const missing = await two.cli(['history', 'web', '4']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /web has no deployment #4/);

  // While web's 4th runs: status names it, and so does its abort.
  const slow = two.cli(['deploy', 'web', await two.release('web4', { APP_STARTUP_MS: '60000' })]);
  await waitUntil('status to show web#4 deploying', async () => /deploying: deployment #4\n/.test((await two.cli(['status', 'web'])).stdout), 15_000, 100);
  const abort = await two.cli(['abort', 'web']);
  assert.equal(abort.code, 0, abort.stdout + abort.stderr);
  assert.match(abort.stdout, /deployment #4 cancelled before its switch/);
  assert.notEqual((await slow).code, 0);
  assert.deepEqual(JSON.parse((await two.cli(['history', 'web', '--json'])).stdout).map((x: any) => [x.seq, x.state]), [[4, 'failed'], [3, 'done'], [2, 'done'], [1, 'done']]);
});
