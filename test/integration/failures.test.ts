// Releases that fail, instances that die, configs that are wrong: the serving
// release keeps answering with zero failed requests.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { request } from 'undici';
import { createDaemon, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad } from '../helpers/load.ts';

let d: TestDaemon;
before(async () => {
  d = await createDaemon({ services: serviceYaml({ extra: 'standby: 0s' }) });
  const r = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
});
after(async () => {
  await d?.cleanup();
});

test('a release that crashes on start leaves v1 serving; deploy exits non-zero with the log tail', async () => {
  const load = startLoad({ url: d.url + '/', concurrency: 3, maxMs: 60_000 });
  await load.waitFor(30, 10_000);
  const r = await d.cli(['deploy', 'web', await d.release('bad', { APP_CRASH_ON_START: '1' })]);
  const res = await load.stop();
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /exited|crash/i);
  assert.match(r.stdout, /crashing on start as asked/, 'the instance log tail is shown');
  assert.match(r.stdout, /keeps serving/);
  assert.equal(res.failed, 0, res.errors.join('; '));
  assert.deepEqual(Object.keys(res.bodies), ['v1']);
  const s = (await d.status('web')).services[0];
  assert.match(s.currentRelease, /v1/);
  assert.equal(s.instances.length, 2, 'the failed release left no instance behind');
});

test('a release that never becomes healthy fails at the start timeout, v1 keeps serving', async () => {
  await d.writeConfig(serviceYaml({ extra: 'standby: 0s' }).replace('start_timeout: 10s', 'start_timeout: 2s'));
  assert.equal((await d.cli(['reload'])).code, 0);
  const load = startLoad({ url: d.url + '/', concurrency: 3, maxMs: 60_000 });
  await load.waitFor(30, 10_000);
  const r = await d.cli(['deploy', 'web', await d.release('sick', { APP_NEVER_HEALTHY: '1' })]);
  const res = await load.stop();
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /health/i);
  assert.match(r.stdout, /not healthy after 2000 ms/, 'it failed at the configured start timeout');
  assert.equal(res.failed, 0, res.errors.join('; '));
  assert.deepEqual(Object.keys(res.bodies), ['v1']);
  const h = JSON.parse((await d.cli(['history', 'web', '--json'])).stdout);
  assert.equal(h[0].state, 'failed');
});

test('kill -9 of one instance under GET load is absorbed by retries and the instance is replaced', async () => {
  const s0 = (await d.status('web')).services[0];
  const retriesBefore = s0.counters.retries;
  // One request held on each instance (no other traffic yet, so the balancer
  // gives one to each): the victim's is in flight at the kill, so a retry is
  // certain, and its retried copy must still answer. `until` makes the copy
  // end when the original would have.
  const until = Date.now() + 4000;
  let settled = 0;
  const held = [0, 1].map(() => request(`${d.url}/slow?until=${until}`).then(async (r) => ({ status: r.statusCode, body: (await r.body.text()).trim() })).finally(() => settled++));
  await waitUntil('one held request on each instance', async () => (await d.status('web')).services[0].instances.every((i: any) => i.inflight === 1), 5_000, 20);
  const victim = s0.instances[0];
  const load = startLoad({ url: d.url + '/', concurrency: 4, maxMs: 60_000 });
  await load.waitFor(20, 10_000);
  assert.equal(settled, 0, 'both held requests are still in flight at the kill');
  process.kill(victim.pid, 'SIGKILL');
  await waitUntil('a replacement instance to be healthy', async () => {
    const s = (await d.status('web')).services[0];
    return s.instances.length === 2 && s.instances.every((i: any) => i.healthy && i.pid !== victim.pid);
  }, 15_000, 200);
  const n = load.snapshot().total;
  await load.waitFor(n + 100, 10_000);
  const res = await load.stop();
  assert.equal(res.failed, 0, res.errors.join('; '));
  assert.deepEqual(Object.keys(res.bodies), ['v1']);
  assert.deepEqual(await Promise.all(held), [{ status: 200, body: 'v1' }, { status: 200, body: 'v1' }], 'the request held on the killed instance was answered by the other');
  const s1 = (await d.status('web')).services[0];
  assert.ok(s1.counters.retries > retriesBefore, `the held request was retried (retries ${retriesBefore} → ${s1.counters.retries})`);
  console.log(`kill -9: ${res.total} requests, 0 failed, ${s1.counters.retries - retriesBefore} retried`);
});

test('an instance that turns unhealthy is taken out of rotation and replaced, with 0 failed requests', async () => {
  const s0 = (await d.status('web')).services[0];
  const victim = s0.instances[0];
  const load = startLoad({ url: d.url + '/', concurrency: 3, maxMs: 60_000 });
  await load.waitFor(50, 10_000);
  const r = await fetch(`http://127.0.0.1:${victim.port}/admin/sick`, { method: 'POST' });
  assert.equal(await r.text(), 'sick');
  await waitUntil('the sick instance to be replaced by a healthy one', async () => {
    const s = (await d.status('web')).services[0];
    return s.instances.length === 2 && s.instances.every((i: any) => i.healthy && i.id !== victim.id);
  }, 15_000, 200);
  const n = load.snapshot().total;
  await load.waitFor(n + 50, 10_000);
  const res = await load.stop();
  assert.equal(res.failed, 0, res.errors.join('; '));
  assert.deepEqual(Object.keys(res.bodies), ['v1']);
  const log = await d.daemonLog();
  assert.match(log, new RegExp(`"msg":"instance unhealthy".*"instance":"${victim.id}"`));
});

test('baton logs shows the instances\' output', async () => {
  const r = await d.cli(['logs', 'web', '--lines', '5']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /web-[0-9a-f]+ \| \d{4}-\d\d-\d\dT\S+ app v1 listening on \d+/);
  const json = await d.cli(['logs', 'web', '--lines', '5', '--json']);
  const entries = json.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(entries.some((e) => /^web-[0-9a-f]+$/.test(e.instance) && /listening on \d+/.test(e.line)), json.stdout);
  const bad = await d.cli(['logs', 'web', '--lines', 'many']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--lines must be a number/);
});

test('a malformed config is refused by reload and SIGHUP; the old one keeps serving', async () => {
  const good = await readFile(d.configFile, 'utf8');
  await writeFile(d.configFile, good.replace('instances: 2', 'instances: two').replace('command:', 'comand:'));
  const load = startLoad({ url: d.url + '/', concurrency: 2, maxMs: 30_000 });
  await load.waitFor(20, 10_000);
  const r = await d.cli(['reload']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /baton\.yaml:\d+:\d+: services\.web\.instances/);
  assert.match(r.stderr, /comand/);
  d.proc.kill('SIGHUP');
  await waitUntil('the daemon to log the refused reload', async () => /reload refused/.test(await d.daemonLog()), 5_000);
  const n = load.snapshot().total;
  await load.waitFor(n + 20, 10_000);
  const res = await load.stop();
  assert.equal(res.failed, 0, res.errors.join('; '));
  assert.deepEqual(Object.keys(res.bodies), ['v1']);
  await writeFile(d.configFile, good);
  assert.equal((await d.cli(['reload'])).code, 0);
});

test('commands that cannot reach the daemon say so and how to start it', async () => {
  const r = await d.cli(['status', '--socket', '/nonexistent/baton.sock']);
  assert.equal(r.code, 3);
  assert.match(r.stderr, /cannot reach the baton daemon.*baton daemon --config /);
});

test('unknown services and bad arguments get clear messages', async () => {
  const a = await d.cli(['deploy', 'nope', d.dir]);
  assert.equal(a.code, 1);
  assert.match(a.stderr, /no service named "nope"/);
  const b = await d.cli(['deploy']);
  assert.equal(b.code, 2);
  assert.match(b.stderr, /deploy needs SERVICE: baton deploy SERVICE \[DIR\] \[--ref REF\]/);
  const g = await d.cli(['deploy', 'web']);
  assert.equal(g.code, 1);
  assert.match(g.stderr, /services\.web\.git is not configured .*give a release directory/);
  const c = await d.cli(['deploy', 'web', '/nonexistent/dir']);
  assert.equal(c.code, 1);
  assert.match(c.stderr, /\/nonexistent\/dir cannot be read/);
  const e = await d.cli(['frobnicate']);
  assert.equal(e.code, 2);
  assert.match(e.stderr, /unknown command "frobnicate"/);
});

test('an instance that keeps crashing is replaced with growing delays', async () => {
  const r = await d.cli(['deploy', 'web', await d.release('flaky', { APP_EXIT_AFTER_MS: '1200' })]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const delays = async (): Promise<number[]> =>
    (await d.daemonLog())
      .split('\n')
      .filter((l) => l.includes('"msg":"replacing instance"'))
      .map((l) => JSON.parse(l) as { inMs: number; release: string })
      .filter((e) => /flaky/.test(e.release))
      .map((e) => e.inMs);
  await waitUntil('three replacements of a crashing instance', async () => (await delays()).filter((x) => x >= 2000).length >= 1, 20_000, 200);
  const seen = await delays();
  assert.ok(seen.includes(500) && seen.includes(1000), `backoff delays: ${seen.join(', ')}`);
  assert.ok(Math.max(...seen) >= 2000, `backoff grows: ${seen.join(', ')}`);
});
