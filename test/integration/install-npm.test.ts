// The npm package (issue 8): `npm pack` builds dist/ (prepack) and ships it;
// the tarball installs into a temporary global prefix, and the installed
// `baton` answers --version and deploys the Quick start from another
// directory. On an older Node it prints one line and exits 1.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { installedDaemon, quickstartDeploy } from '../fixtures/installed-baton.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const NODE24_DIR = path.dirname(process.execPath);
const SYSTEM_NODE = '/usr/bin/node';

test('npm pack → npm i -g → baton --version and a deploy from another directory', { timeout: 300_000 }, async (t) => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'baton-npm-'));
  const cleanups: (() => Promise<void> | void)[] = [];
  t.after(async () => {
    for (const c of cleanups.reverse()) await c();
    rmSync(tmp, { recursive: true, force: true });
  });
  // Pack a copy of the sources (prepack rebuilds dist/, which must not disturb the worktree's).
  const srcCopy = path.join(tmp, 'pkg');
  mkdirSync(srcCopy);
  for (const f of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'README.md', 'bin', 'src', 'docs', 'scripts']) {
    cpSync(path.join(ROOT, f), path.join(srcCopy, f), { recursive: true });
  }
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(srcCopy, 'node_modules'));
  // npm's own `#!/usr/bin/env node` must find Node 24, as the pinned one is for npm scripts.
  const npmEnv = { ...process.env, PATH: `${NODE24_DIR}:${process.env['PATH'] ?? '/usr/bin:/bin'}`, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
  const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: srcCopy, env: npmEnv, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 })) as { filename: string; files: { path: string }[] }[];
  const files = packed[0]!.files.map((f) => f.path);
  assert.ok(files.includes('dist/cli/main.js'), 'the tarball has compiled dist/');
  assert.ok(files.includes('bin/baton.js'));
  assert.ok(!files.some((f) => f.startsWith('src/') || f.startsWith('test/') || f.startsWith('build/')), `no sources, tests or executables in the tarball: ${files.filter((f) => /^(src|test|build)\//.test(f)).slice(0, 3).join(', ')}`);
  const tarball = path.join(tmp, packed[0]!.filename);

  const prefix = path.join(tmp, 'prefix');
  execFileSync('npm', ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: tmp, env: npmEnv, stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 });
  const bin = path.join(prefix, 'bin', 'baton');
  assert.ok(existsSync(bin), 'npm linked bin/baton into the prefix');
  assert.ok(!existsSync(path.join(realpathSync(path.dirname(realpathSync(bin))), '..', 'src')), 'the installed package has no src/');

  // Only Node 24 and the prefix's bin on PATH, plus the system tools after them.
  const env = { PATH: `${NODE24_DIR}:${path.join(prefix, 'bin')}:/usr/bin:/bin`, HOME: tmp, LANG: 'C.UTF-8' };
  const elsewhere = path.join(tmp, 'elsewhere');
  mkdirSync(elsewhere);
  assert.equal(execFileSync('baton', ['--version'], { cwd: elsewhere, env, encoding: 'utf8' }).trim(), VERSION);

  // An older Node: one clear line, exit 1.
  if (existsSync(SYSTEM_NODE) && Number(execFileSync(SYSTEM_NODE, ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8' })) < 24) {
    const old = spawnSync(SYSTEM_NODE, [bin, '--version'], { cwd: elsewhere, encoding: 'utf8' });
    assert.equal(old.status, 1);
    assert.equal(old.stdout, '');
    assert.match(old.stderr, /^baton: Node\.js 24 or newer is required \(this is v\d+\.[^\n]*\n$/);
  } else {
    t.diagnostic(`${SYSTEM_NODE} is missing or not older than 24: the old-Node message is not exercised`);
  }

  // The unit names this Node and the installed bin/baton.js, resolved (systemd does not search PATH the same way).
  const unit = execFileSync('baton', ['systemd', '--config', '/etc/baton/baton.yaml'], { cwd: elsewhere, env, encoding: 'utf8' });
  const installedBin = realpathSync(bin);
  assert.match(unit, new RegExp(`^ExecStart=${process.execPath} ${installedBin} daemon --config /etc/baton/baton.yaml$`, 'm'));

  const d = await installedDaemon({ baton: [bin], env, dir: path.join(tmp, 'site') });
  cleanups.push(() => d.cleanup());
  await d.start();
  const { load, v2 } = await quickstartDeploy(d, elsewhere);
  assert.equal(v2.code, 0, `deploy of v2: ${v2.stdout}\n${v2.stderr}`);
  assert.equal(load.failed, 0, `failed requests: ${load.errors.slice(0, 5).join('; ')}`);
  assert.ok((load.bodies['hello from v2'] ?? 0) > 0, 'v2 answered after the switch');
});
