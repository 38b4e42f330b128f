// Apps as their own user (issue 8): a real unprivileged user runs the
// service's instances and its build hook (uid/gid read from /proc), can read
// its release but cannot write it nor the state directory; a member of the
// control socket's group uses the CLI without root, anybody else cannot.
// Needs root (useradd, setuid at spawn): CI and this machine run as root.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { installedDaemon, EXAMPLES } from '../fixtures/installed-baton.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BATON = path.join(ROOT, 'bin/baton.js');
const isRoot = process.getuid?.() === 0;

/** Uid and Gid lines of /proc/PID/status: [real, effective, saved, filesystem]. */
function ids(pid: number): { uid: number[]; gid: number[]; groups: string } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): string => new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(status)?.[1]?.trim() ?? '';
  return { uid: field('Uid').split(/\s+/).map(Number), gid: field('Gid').split(/\s+/).map(Number), groups: field('Groups') };
}

/** Run a command as another user (runuser: no password, no PAM session for root). */
function as(user: string, cmd: string[], cwd = '/'): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('runuser', ['-u', user, '--', ...cmd], { cwd, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('a service runs as its own user; a member of the control group uses the CLI without root', { skip: isRoot ? false : 'needs root (useradd, setuid)', timeout: 120_000 }, async (t) => {
  const tag = randomBytes(3).toString('hex');
  const app = `bt-app-${tag}`;
  const deployGroup = `bt-dep-${tag}`;
  const dev = `bt-dev-${tag}`;
  const outsider = `bt-out-${tag}`;
  const cleanups: (() => unknown)[] = [];
  t.after(async () => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        // best effort: the next cleanup still runs
      }
    }
  });
  execFileSync('groupadd', [deployGroup]);
  cleanups.push(() => execFileSync('groupdel', [deployGroup]));
  for (const [u, extra] of [[app, []], [dev, ['-G', deployGroup]], [outsider, []]] as const) {
    execFileSync('useradd', ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', ...extra, u]);
    cleanups.push(() => execFileSync('userdel', [u]));
  }
  const uid = Number(execFileSync('id', ['-u', app], { encoding: 'utf8' }));
  const gid = Number(execFileSync('id', ['-g', app], { encoding: 'utf8' }));

  // A server's layout: the state directory is root's, 0755 (mkdtemp makes 0700).
  const dir = mkdtempSync(path.join(os.tmpdir(), 'baton-user-'));
  chmodSync(dir, 0o755);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const d = await installedDaemon({
    baton: [process.execPath, BATON],
    env: process.env,
    dir: path.join(dir, 'site'),
    extraConfig: `control: { group: ${deployGroup} }`,
    serviceExtra: [`user: ${app}`, 'hooks:', '  build: id -u > built-by-uid && id -g >> built-by-uid'],
  });
  cleanups.push(() => d.cleanup());
  chmodSync(d.dir, 0o755);
  await d.start();
  const v1 = await d.cli(['deploy', 'web', path.join(EXAMPLES, 'app-v1')]);
  assert.equal(v1.code, 0, `${v1.stdout}\n${v1.stderr}\n${await d.daemonLog()}`);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'hello from v1');

  const status = JSON.parse((await d.cli(['status', 'web', '--json'])).stdout);
  const svc = status.services[0];
  assert.equal(svc.instances.length, 2);
  for (const inst of svc.instances) {
    const p = ids(inst.pid);
    assert.deepEqual(p.uid, [uid, uid, uid, uid], `instance ${inst.pid} runs as ${app} (uid ${uid})`);
    assert.deepEqual(p.gid, [gid, gid, gid, gid], `instance ${inst.pid} runs with ${app}'s group (gid ${gid})`);
    assert.equal(p.groups, '', 'no supplementary groups inherited from the daemon');
  }

  // The build hook ran as the app's user; afterwards the release is the daemon's, readable by the app only.
  const releaseDir = path.join(d.stateDir, 'releases', 'web', svc.currentRelease);
  assert.equal(readFileSync(path.join(releaseDir, 'built-by-uid'), 'utf8'), `${uid}\n${gid}\n`);
  assert.equal(statSync(path.join(releaseDir, 'server.js')).uid, 0, 'the release is owned by the daemon again after the build');
  assert.equal(as(app, ['cat', path.join(releaseDir, 'server.js')]).code, 0, 'the app can read its release');
  assert.notEqual(as(app, ['touch', path.join(releaseDir, 'server.js')]).code, 0, 'the app cannot change its release');
  assert.notEqual(as(app, ['touch', path.join(releaseDir, 'new-file')]).code, 0, 'the app cannot add to its release');
  const w = as(app, ['touch', path.join(d.stateDir, 'written-by-app')]);
  assert.notEqual(w.code, 0, 'the app cannot write the state directory');
  assert.match(w.stderr, /Permission denied/);
  assert.notEqual(as(app, ['cat', path.join(d.stateDir, 'secret')]).code, 0, 'nor read the daemon\'s signing secret');

  // The control socket: group deployGroup, 0660.
  const sock = statSync(path.join(d.stateDir, 'baton.sock'));
  assert.equal(sock.mode & 0o777, 0o660);
  assert.equal(sock.gid, Number(execFileSync('getent', ['group', deployGroup], { encoding: 'utf8' }).split(':')[2]));
  const member = as(dev, [process.execPath, BATON, 'status', 'web', '--config', d.configFile], d.dir);
  assert.equal(member.code, 0, `a member of ${deployGroup} uses the CLI without root: ${member.stderr}`);
  assert.match(member.stdout, /service web/);
  const deployByMember = as(dev, [process.execPath, BATON, 'deploy', 'web', path.join(EXAMPLES, 'app-v2'), '--config', d.configFile], d.dir);
  assert.equal(deployByMember.code, 0, `a member deploys: ${deployByMember.stdout}\n${deployByMember.stderr}`);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'hello from v2');
  const other = as(outsider, [process.execPath, BATON, 'status', '--config', d.configFile], d.dir);
  assert.notEqual(other.code, 0, 'a user outside the group cannot use the control socket');
  assert.match(other.stderr, /permission|EACCES/i);
});
