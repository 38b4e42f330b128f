// Push to deploy: `git push` to the repository `baton git-remote` made deploys
// the pushed commit, streams the progress back, and rejects the push when the
// deploy fails (the branch then still names what is serving).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { writeFile } from 'node:fs/promises';
import { createDaemon, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';
import { createAppRepo, git, type AppRepo } from '../helpers/git.ts';
import { startLoad } from '../helpers/load.ts';

let d: TestDaemon;
let repo: AppRepo;
let remote: string;

function push(ref = 'main'): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile('git', ['push', 'production', ref], { cwd: repo.dir, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, output: stdout + stderr });
    });
  });
}

before(async () => {
  d = await createDaemon({
    // start_timeout 60s: the two-pushes test holds its first release's start-up until the second push is refused.
    services: serviceYaml({ extra: 'hooks:\n  build: |\n    if [ -f BREAK_BUILD ]; then echo "build broke: missing dependency" >&2; exit 1; fi' }).replace('start_timeout: 10s', 'start_timeout: 60s'),
  });
  repo = await createAppRepo(path.join(d.dir, 'app'));
  remote = path.join(d.dir, 'production.git');
  const r = await d.cli(['git-remote', 'web', remote]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /git push production main/);
  git(repo.dir, 'remote', 'add', 'production', remote);
});
after(async () => {
  await d?.cleanup();
});

test('git push deploys the pushed commit and streams the progress to the pusher', async () => {
  const sha = await repo.commit('v1');
  const r = await push();
  assert.equal(r.code, 0, r.output);
  assert.match(r.output, /remote: .*traffic switched to/);
  assert.match(r.output, /remote: ✓ deploy #\d+ of web to [0-9a-f]{12} done/);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v1');
  const rel = JSON.parse((await d.cli(['releases', 'web', '--json'])).stdout)[0];
  assert.equal(rel.git.commit, sha);
  assert.equal(rel.sourcePath, remote);
  const h = JSON.parse((await d.cli(['history', 'web', '--json'])).stdout)[0];
  assert.match(h.actor, /\(git push\)$/);
});

test('a push under load: 0 failed requests', async () => {
  await repo.commit('v2');
  const load = startLoad({ url: d.url + '/', concurrency: 3, maxMs: 60_000 });
  await load.waitFor(30, 10_000);
  const r = await push();
  assert.equal(r.code, 0, r.output);
  const n = load.snapshot().total;
  await load.waitFor(n + 30, 10_000);
  await load.waitForEach(2, 10_000);
  const res = await load.stop();
  assert.equal(res.failed, 0, res.errors.join('; '));
  assert.deepEqual(Object.keys(res.bodies).sort(), ['v1', 'v2'], 'the load saw v1, then the pushed v2');
  for (const seq of res.sequences) assert.equal(seq.at(-1), 'v2', `a client saw ${seq.join(' → ')}`);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v2');
});

test('a push whose deploy fails is rejected and leaves the branch and the site as they were', async () => {
  const good = git(remote, 'rev-parse', 'main');
  await repo.commit('v3', { BREAK_BUILD: '1' });
  const r = await push();
  assert.notEqual(r.code, 0, r.output);
  assert.match(r.output, /build broke: missing dependency/);
  assert.match(r.output, /pre-receive hook declined/);
  assert.equal(git(remote, 'rev-parse', 'main'), good, 'the remote branch did not move');
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v2');
});

test('two pushes at once: the second is refused while the first deploys', async () => {
  // The first push deploys a release that starts listening only once the
  // test says so (after the second push): however slow the machine, the
  // second push meets the first one deploying.
  const fixture = path.resolve(import.meta.dirname, '../fixtures/app.mjs');
  const go = path.join(d.dir, 'v4-may-start');
  const slowServer = [
    "process.env.APP_VERSION ??= 'v4';",
    "const { existsSync } = await import('node:fs');",
    `while (!existsSync(${JSON.stringify(go)})) await new Promise((r) => setTimeout(r, 50));`,
    `await import(${JSON.stringify(fixture)});`,
    '',
  ].join('\n');
  git(repo.dir, 'fetch', '--quiet', 'production');
  git(repo.dir, 'reset', '--quiet', '--hard', 'production/main');
  await repo.commit('v4', { 'server.mjs': slowServer });
  const first = push();
  await waitUntil('the first push to be deploying', async () => (await d.status('web')).services[0].deploying !== null, 20_000, 50);
  // Meanwhile someone else pushes from their own clone.
  const other = path.join(d.dir, 'other');
  git(d.dir, 'clone', '--quiet', remote, other);
  await writeFile(path.join(other, 'VERSION'), 'v5\n');
  git(other, 'commit', '--quiet', '-am', 'v5 from elsewhere');
  const second = await new Promise<{ code: number; output: string }>((resolve) => {
    execFile('git', ['push', 'origin', 'main'], { cwd: other, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? 1 : 0, output: stdout + stderr });
    });
  });
  await writeFile(go, '');
  assert.notEqual(second.code, 0, second.output);
  assert.match(second.output, /a deployment of web is already running/);
  const a = await first;
  assert.equal(a.code, 0, a.output);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v4');
});
