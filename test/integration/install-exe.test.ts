// The single executable (issue 8): built once by `npm run build:exe`'s script,
// copied alone into an empty directory, run with a PATH that has neither node
// nor npm, and used for the Quick start's deploy: v1 → v2 under load, 0 failed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { installedDaemon, quickstartDeploy } from '../fixtures/installed-baton.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

test('the single executable deploys the Quick start with no node and no npm on PATH', { timeout: 300_000 }, async (t) => {
  execFileSync(process.execPath, [path.join(ROOT, 'scripts/build-exe.ts')], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], timeout: 240_000 });

  const dir = mkdtempSync(path.join(os.tmpdir(), 'baton-exe-'));
  const cleanups: (() => Promise<void> | void)[] = [];
  t.after(async () => {
    for (const c of cleanups.reverse()) await c();
    rmSync(dir, { recursive: true, force: true });
  });
  const exe = path.join(dir, 'baton-linux-x64');
  copyFileSync(path.join(ROOT, 'build/baton-linux-x64'), exe);
  assert.deepEqual(readdirSync(dir), ['baton-linux-x64'], 'the executable is alone in its directory');
  // PATH holds only `baton` (a link to the executable): no node, no npm, no shell tools.
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  symlinkSync(exe, path.join(bin, 'baton'));
  const env = { PATH: bin, HOME: dir, LANG: 'C.UTF-8' };
  for (const tool of ['node', 'npm', 'npx']) {
    assert.throws(() => execFileSync('/bin/sh', ['-c', `command -v ${tool}`], { env, stdio: 'pipe' }), `${tool} must not be on the test's PATH`);
  }

  assert.equal(execFileSync('baton', ['--version'], { env, encoding: 'utf8' }).trim(), JSON.parse(execFileSync('cat', [path.join(ROOT, 'package.json')], { encoding: 'utf8' })).version);

  // The unit written by the executable runs the executable itself (resolved), and systemd accepts it.
  const unit = execFileSync('baton', ['systemd', '--config', path.join(dir, 'site/baton.yaml')], { env, encoding: 'utf8' });
  assert.match(unit, new RegExp(`^ExecStart=${exe} daemon --config ${path.join(dir, 'site/baton.yaml')}$`, 'm'));
  writeFileSync(path.join(dir, 'baton.service'), unit);
  const verify = spawnSync('systemd-analyze', ['verify', path.join(dir, 'baton.service')], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(verify.status, 0, verify.stderr);

  const d = await installedDaemon({ baton: ['baton'], env, dir: path.join(dir, 'site') });
  cleanups.push(() => d.cleanup());
  await d.start();
  const { load, v2 } = await quickstartDeploy(d);
  assert.equal(v2.code, 0, `deploy of v2: ${v2.stdout}\n${v2.stderr}`);
  assert.equal(load.failed, 0, `failed requests: ${load.errors.slice(0, 5).join('; ')}`);
  assert.ok((load.bodies['hello from v1'] ?? 0) > 0, 'v1 answered during the deploy');
  assert.ok((load.bodies['hello from v2'] ?? 0) > 0, 'v2 answered after the switch');
  const status = JSON.parse((await d.cli(['status', 'web', '--json'])).stdout);
  assert.equal(status.services[0].instances.filter((i: { release: string }) => i.release === status.services[0].currentRelease).length, 2);
});
