// A new daemon that does not come up (a bad config, a crash) leaves the old
// one serving with its state taken back; `baton upgrade` exits non-zero with
// the reason. An upgrade that cannot hand the state over now is refused.

import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createDaemon, serviceYaml, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad, type RunningLoad } from '../helpers/load.ts';

let d: TestDaemon;
let faultFile = '';
let loads: RunningLoad[] = [];
before(async () => {
  // The test hook (src/daemon/handover.ts): read by a successor from the environment it inherits.
  faultFile = path.join(process.cwd(), `.upgrade-fault-${process.pid}`);
  process.env['BATON_TEST_UPGRADE_FAULT'] = faultFile;
  d = await createDaemon({ services: serviceYaml({ instances: 2 }) });
  const r = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
});
afterEach(async () => {
  await Promise.all(loads.map((l) => l.stop()));
  loads = [];
  await rm(faultFile, { force: true });
});
after(async () => {
  await d?.cleanup();
});

function load(): RunningLoad[] {
  loads = [
    startLoad({ url: d.url + '/', concurrency: 3, keepAlive: true, maxMs: 120_000 }),
    startLoad({ url: d.url + '/', concurrency: 2, keepAlive: false, maxMs: 120_000 }),
  ];
  return loads;
}

async function assertStillServing(pid: number, instancePids: number[]): Promise<void> {
  const s = await d.status('web');
  assert.equal(s.daemon.pid, pid, 'the old daemon still answers on the control socket');
  assert.deepEqual(s.services[0].instances.map((i: any) => i.pid).sort(), instancePids, 'the same instances');
  // Its control plane is back: a state-changing operation works.
  const r = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(r.code, 0, `a deploy after the failed upgrade: ${r.stdout}${r.stderr}`);
}

async function finish(ls: RunningLoad[]): Promise<void> {
  const n = ls[0]!.snapshot().total;
  await ls[0]!.waitFor(n + 100, 30_000);
  const results = await Promise.all(ls.map((l) => l.stop()));
  loads = [];
  for (const r of results) {
    assert.equal(r.failed, 0, `failed requests: ${r.errors.join('; ')}`);
    assert.deepEqual(Object.keys(r.bodies), ['v1']);
  }
}

test('a bad config: the new daemon refuses to start, the old one keeps serving, the command says why', async () => {
  const before = await d.status('web');
  const pids = before.services[0].instances.map((i: any) => i.pid).sort();
  const good = await readFile(d.configFile, 'utf8');
  const ls = load();
  await ls[0]!.waitFor(100, 30_000);
  await writeFile(d.configFile, good.replace('services:', 'services:\n  - nonsense: [\n'));
  let r;
  try {
    r = await d.cli(['upgrade'], 90_000);
  } finally {
    await writeFile(d.configFile, good);
  }
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /the new daemon \(pid \d+\) did not come up: CONFIG_INVALID: .*baton\.yaml/);
  assert.match(r.stderr, new RegExp(`pid ${before.daemon.pid} keeps serving`));
  assert.match(r.stdout, /resumed +this daemon took its state back/);
  await finish(ls);
  await assertStillServing(before.daemon.pid, pids);
});

test('an injected crash of the new daemon: the old one keeps serving, the command says why', async () => {
  const before = await d.status('web');
  const pids = before.services[0].instances.filter((i: any) => i.role === 'current').map((i: any) => i.pid).sort();
  const ls = load();
  await ls[0]!.waitFor(100, 30_000);
  await writeFile(faultFile, 'crash\n');
  const r = await d.cli(['upgrade'], 90_000);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /did not come up: it exited with status 70 \(the test hook BATON_TEST_UPGRADE_FAULT\) during start-up/);
  await finish(ls);
  const s = await d.status('web');
  assert.equal(s.daemon.pid, before.daemon.pid);
  assert.deepEqual(s.services[0].instances.filter((i: any) => i.role === 'current').map((i: any) => i.pid).sort(), pids);
  // Without the fault, the next upgrade goes through.
  await rm(faultFile, { force: true });
  const ok = await d.cli(['upgrade', '--json'], 90_000);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.notEqual((await d.status()).daemon.pid, before.daemon.pid);
});

test('an upgrade while a service is paused is refused and changes nothing', async () => {
  const pid = (await d.status()).daemon.pid;
  assert.equal((await d.cli(['pause', 'web'])).code, 0);
  try {
    const r = await d.cli(['upgrade'], 30_000);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot upgrade now: web is paused/);
    assert.equal((await d.status()).daemon.pid, pid);
  } finally {
    assert.equal((await d.cli(['resume', 'web'])).code, 0);
  }
});
