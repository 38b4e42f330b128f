// Releases from git with hooks, under load: branch, tag and commit deploys,
// build once per commit, migrate once per deploy (never two at once), smoke
// tests on a private preview, failing hooks that change nothing, retention.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { createAppRepo, type AppRepo } from '../helpers/git.ts';
import { startLoad } from '../helpers/load.ts';

let d: TestDaemon;
let repo: AppRepo;
const shas: Record<string, string> = {};

function lines(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : [];
}

function serviceBlock(name: string, dir: string, repoDir: string): string {
  const node = process.execPath;
  return `  ${name}:
    command: exec "${node}" server.mjs
    instances: 2
    health: { path: /healthz, interval: 200ms, timeout: 1s, start_timeout: 10s }
    drain_timeout: 3s
    stop_timeout: 3s
    standby: 0s
    keep_releases: 2
    ${name === 'web' ? 'default: true' : 'hosts: [api.test]'}
    git: { repo: "${repoDir}", branch: main }
    shared: [config/settings.json]
    hooks:
      build: |
        echo "compiling assets for $BATON_RELEASE"
        if [ -f BREAK_BUILD ]; then echo "error: syntax error in app.js" >&2; exit 2; fi
        echo "$BATON_SERVICE $BATON_RELEASE" >> "${dir}/builds.log"
      migrate:
        timeout: 20s
        command: |
          if [ -f BREAK_MIGRATE ]; then echo "migration 0042 failed: column exists" >&2; exit 3; fi
          mkdir "${dir}/migrating" || { echo "another migration is running" >&2; exit 9; }
          echo "$BATON_SERVICE $BATON_DEPLOYMENT" >> "${dir}/migrations.log"
          sleep 0.5
          rmdir "${dir}/migrating"
      smoke: |
        if [ -f FAIL_SMOKE ]; then echo "smoke: /checkout answered 500" >&2; exit 1; fi
        "${node}" -e "fetch(process.env.BATON_PREVIEW_URL).then(r => r.text()).then(t => { const want = require('fs').readFileSync('VERSION', 'utf8').trim(); if (t.trim() !== want) { console.error('preview served', t.trim(), 'expected', want); process.exit(1); } console.log('preview serves', want); })"
      after_switch: echo "$BATON_RELEASE" >> "${dir}/switched.log"`;
}

before(async () => {
  d = await createDaemon({ start: false });
  repo = await createAppRepo(path.join(d.dir, 'app'));
  shas['v1'] = await repo.commit('v1');
  const { git } = await import('../helpers/git.ts');
  git(repo.dir, 'tag', '-a', 'v1.0', '-m', 'version 1.0');
  shas['v2'] = await repo.commit('v2', {}, 'second version');
  await d.writeConfig(serviceBlock('web', d.dir, repo.dir));
  await d.start();
});
after(async () => {
  await d?.cleanup();
});

test('a missing shared file stops the deploy before anything starts', async () => {
  const r = await d.cli(['deploy', 'web']);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /shared path\(s\) of web missing/);
  assert.match(r.stdout, /shared\/web\/config\/settings\.json/);
  assert.equal(lines(path.join(d.dir, 'builds.log')).length, 0, 'nothing was built');
  assert.equal((await d.status('web')).services[0].instances.length, 0, 'nothing was started');
  await mkdir(path.join(d.dir, 'state/shared/web/config'), { recursive: true });
  await writeFile(path.join(d.dir, 'state/shared/web/config/settings.json'), '{}');
});

test('deploy of the branch head: exported, built, migrated, smoke-tested on the preview, switched', async () => {
  const r = await d.cli(['deploy', 'web']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /commit [0-9a-f]{12} \(main\) by Ada Tester <ada@example.com>: second version/);
  assert.match(r.stdout, /\| compiling assets/, 'build output is streamed');
  assert.match(r.stdout, /\| preview serves v2/, 'the smoke test reached the new release');
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v2');
  const id = shas['v2']!.slice(0, 12);
  assert.deepEqual(lines(path.join(d.dir, 'builds.log')), [`web ${id}`]);
  assert.equal(lines(path.join(d.dir, 'migrations.log')).length, 1);
  assert.deepEqual(lines(path.join(d.dir, 'switched.log')), [id]);
  const rel = JSON.parse((await d.cli(['releases', 'web', '--json'])).stdout)[0];
  assert.equal(rel.id, id);
  assert.equal(rel.git.commit, shas['v2']);
  assert.equal(rel.git.author, 'Ada Tester <ada@example.com>');
  assert.equal(rel.git.message, 'second version');
  assert.equal(rel.buildStatus, 'ok');
  assert.ok(!existsSync(path.join(rel.dir, '.git')), 'a clean export, not a checkout');
  assert.equal(readlinkSync(path.join(rel.dir, 'config/settings.json')), path.join(d.dir, 'state/shared/web/config/settings.json'));
});

test('deploy of a tag under load: 0 failed, builds the older commit', async () => {
  const load = startLoad({ url: d.url + '/', concurrency: 3, maxMs: 60_000 });
  await load.waitFor(30, 10_000);
  const r = await d.cli(['deploy', 'web', '--ref', 'v1.0']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const n = load.snapshot().total;
  await load.waitFor(n + 30, 10_000);
  await load.waitForEach(2, 10_000);
  const res = await load.stop();
  assert.equal(res.failed, 0, res.errors.join('; '));
  assert.deepEqual(Object.keys(res.bodies).sort(), ['v1', 'v2'], 'the load saw v2, then the tag\'s v1');
  for (const seq of res.sequences) assert.equal(seq.at(-1), 'v1', `a client saw ${seq.join(' → ')}`);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v1');
  assert.equal(lines(path.join(d.dir, 'builds.log')).length, 2);
  assert.equal(lines(path.join(d.dir, 'migrations.log')).length, 2, 'migrate runs once per deployment');
});

test('redeploy of a built commit by abbreviated sha does not build again', async () => {
  const r = await d.cli(['deploy', 'web', '--ref', shas['v2']!.slice(0, 8)]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /already built/);
  assert.match(r.stdout, /already on disk: not exporting again/);
  assert.equal(lines(path.join(d.dir, 'builds.log')).length, 2, 'no rebuild');
  assert.equal(lines(path.join(d.dir, 'migrations.log')).length, 3, 'but migrate ran for this deployment');
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v2');
});

test('rollback to an older kept release (cold, standby 0) does not rebuild', async () => {
  const r = await d.cli(['rollback', 'web', '--to', shas['v1']!.slice(0, 12)]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(lines(path.join(d.dir, 'builds.log')).length, 2, 'no rebuild');
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v1');
});

for (const [what, file, pattern] of [
  ['build', 'BREAK_BUILD', /syntax error in app\.js/],
  ['migration', 'BREAK_MIGRATE', /migration 0042 failed/],
  ['smoke test', 'FAIL_SMOKE', /smoke: \/checkout answered 500/],
] as const) {
  test(`a failing ${what} aborts with its output tail; v1 keeps serving with 0 failed requests`, async () => {
    const sha = await repo.commit(`bad-${file}`, { [file]: 'yes' });
    const load = startLoad({ url: d.url + '/', concurrency: 3, maxMs: 60_000 });
    await load.waitFor(30, 10_000);
    const r = await d.cli(['deploy', 'web']);
    const res = await load.stop();
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stdout, pattern, 'the hook output tail is shown');
    assert.match(r.stdout, /hook failed/);
    assert.equal(res.failed, 0, res.errors.join('; '));
    assert.deepEqual(Object.keys(res.bodies), ['v1']);
    const s = (await d.status('web')).services[0];
    assert.equal(s.instances.length, 2, 'no instance of the failed release is left');
    const rel = JSON.parse((await d.cli(['releases', 'web', '--json'])).stdout).find((x: any) => x.id === sha.slice(0, 12));
    if (what === 'build') {
      assert.equal(rel.buildStatus, 'failed');
      assert.ok(!existsSync(rel.dir), 'no half-built release is left to be picked up later');
    }
    const h = JSON.parse((await d.cli(['history', 'web', '--json'])).stdout)[0];
    assert.equal(h.state, 'failed');
    assert.ok(h.events.some((e: any) => pattern.test(e.message)), 'the tail is stored with the deployment');
    const one = await d.cli(['history', 'web', String(h.seq)]);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, new RegExp(`deployment #${h.seq}: deploy of web`));
    assert.match(one.stdout, pattern);
    assert.match(one.stdout, /\(cli\)/);
  });
}

test('an unknown ref is refused with a clear message and changes nothing', async () => {
  const r = await d.cli(['deploy', 'web', '--ref', 'no-such-branch']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no-such-branch/);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v1');
});

test('two services deploying at once never migrate at the same time', async () => {
  await d.writeConfig(serviceBlock('web', d.dir, repo.dir) + '\n' + serviceBlock('api', d.dir, repo.dir));
  assert.equal((await d.cli(['reload'])).code, 0);
  await mkdir(path.join(d.dir, 'state/shared/api/config'), { recursive: true });
  await writeFile(path.join(d.dir, 'state/shared/api/config/settings.json'), '{}');
  await repo.commit('v3');
  const before = lines(path.join(d.dir, 'migrations.log')).length;
  const [a, b] = await Promise.all([d.cli(['deploy', 'web']), d.cli(['deploy', 'api'])]);
  assert.equal(a.code, 0, a.stdout + a.stderr);
  assert.equal(b.code, 0, b.stdout + b.stderr);
  const log = lines(path.join(d.dir, 'migrations.log'));
  assert.equal(log.length, before + 2);
  assert.ok(log.some((l) => l.startsWith('api ')) && log.some((l) => l.startsWith('web ')));
});

test('retention keeps keep_releases plus the current and standby releases', async () => {
  for (const v of ['v4', 'v5', 'v6']) {
    await repo.commit(v);
    const r = await d.cli(['deploy', 'web']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  }
  const rs = JSON.parse((await d.cli(['releases', 'web', '--json'])).stdout);
  // keep_releases: 2, plus current (v6) and standby (v5) which are among the newest.
  assert.equal(rs.length, 4, `kept ${rs.map((r: any) => r.id).join(', ')}`);
  assert.ok(rs.some((r: any) => r.current) && rs.some((r: any) => r.standby));
  for (const r of rs) assert.ok(existsSync(r.dir), `${r.id} is on disk`);
});

test('deploying the warm standby\'s release again switches to its running instances under load: no new instance, no build, no migration', async () => {
  const twoServices = serviceBlock('web', d.dir, repo.dir) + '\n' + serviceBlock('api', d.dir, repo.dir);
  await d.writeConfig(twoServices.replaceAll('standby: 0s', 'standby: 1m'));
  assert.equal((await d.cli(['reload'])).code, 0);
  // v6 serves; deploy v5 (kept) so that v6 becomes the warm standby.
  const v6 = (await d.status('web')).services[0].currentRelease as string;
  const v5 = (JSON.parse((await d.cli(['releases', 'web', '--json'])).stdout) as any[]).find((r) => r.standby).id as string;
  const back = await d.cli(['deploy', 'web', '--ref', v5]);
  assert.equal(back.code, 0, back.stdout + back.stderr);
  const s = (await d.status('web')).services[0];
  assert.equal(s.standbyRelease, v6);
  const warmPids = s.instances.filter((i: any) => i.role === 'standby').map((i: any) => i.pid).sort();
  assert.equal(warmPids.length, 2, 'v6 runs warm');

  const migrations = lines(path.join(d.dir, 'migrations.log')).length;
  const builds = lines(path.join(d.dir, 'builds.log')).length;
  const load = startLoad({ url: d.url + '/', concurrency: 3, maxMs: 60_000 });
  await load.waitFor(30, 10_000);
  const r = await d.cli(['deploy', 'web', '--ref', v6]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /is a warm standby: reusing its 2 running instance\(s\)/);
  assert.doesNotMatch(r.stdout, /instance .* started|migrate hook|build hook/);
  const n = load.snapshot().total;
  await load.waitFor(n + 30, 10_000);
  await load.waitForEach(2, 10_000);
  const res = await load.stop();
  assert.equal(res.failed, 0, res.errors.join('; '));
  assert.deepEqual(Object.keys(res.bodies).sort(), ['v5', 'v6'], 'the load saw v5, then the standby\'s v6');
  for (const seq of res.sequences) assert.equal(seq.at(-1), 'v6', `a client saw ${seq.join(' → ')}`);
  const after = (await d.status('web')).services[0];
  assert.equal(after.currentRelease, v6);
  assert.deepEqual(after.instances.filter((i: any) => i.role === 'current').map((i: any) => i.pid).sort(), warmPids, 'the same processes serve');
  assert.equal(lines(path.join(d.dir, 'migrations.log')).length, migrations, 'the migrate hook did not run again');
  assert.equal(lines(path.join(d.dir, 'builds.log')).length, builds, 'nothing was built');
});
