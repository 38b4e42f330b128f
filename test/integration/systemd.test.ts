// `baton systemd` (issue 8): the unit passes `systemd-analyze verify`, and a
// restart the way that unit does it (KillMode=process: SIGTERM to the daemon
// only, then a new daemon) leaves the instances' pids unchanged. The gap that
// clients see between the two daemons is measured and reported (the
// daemon-upgrade work, issue 10, removes it).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createDaemon, waitUntil } from '../helpers/daemon.ts';
import { withTimeout } from '../helpers/timeouts.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BATON = path.join(ROOT, 'bin/baton.js');

function baton(args: string[], cwd: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BATON, ...args], { cwd, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function verify(unitFile: string): { ok: boolean; output: string } {
  // `systemd-analyze verify` works without a running systemd (offline checks of
  // the unit: syntax, known settings, ExecStart is an absolute executable path).
  const r = spawnSync('systemd-analyze', ['verify', unitFile], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, SYSTEMD_LOG_COLOR: '0' } });
  return { ok: r.status === 0 && !/\b(Unknown|Invalid|not executable|Failed|Missing)\b/i.test(r.stderr), output: r.stdout + r.stderr };
}

test('the unit from `baton systemd` passes systemd-analyze verify, as root and as an unprivileged user', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'baton-systemd-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = path.join(dir, 'baton.yaml');
  writeFileSync(config, 'listen: ["127.0.0.1:8080"]\nservices: {}\n');

  for (const extra of [[], ['--user', 'baton']]) {
    const r = baton(['systemd', '--config', config, ...extra], dir);
    assert.equal(r.code, 0, r.stderr);
    const unit = r.stdout;
    assert.match(unit, /^KillMode=process$/m, 'instances survive a daemon restart');
    assert.match(unit, /^Restart=on-failure$/m);
    assert.match(unit, new RegExp(`^ExecStart=${process.execPath} ${BATON} daemon --config ${config}$`, 'm'), 'ExecStart names the installed Node and bin, resolved');
    if (extra.length) {
      assert.match(unit, /^User=baton$/m);
      assert.match(unit, /^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m);
    } else {
      assert.doesNotMatch(unit, /^User=/m);
    }
    const file = path.join(dir, 'baton.service');
    writeFileSync(file, unit);
    const v = verify(file);
    assert.ok(v.ok, `systemd-analyze verify:\n${v.output}`);
  }

  // The check can fail: a unit whose ExecStart does not exist is refused.
  const broken = path.join(dir, 'broken.service');
  writeFileSync(broken, readFileSync(path.join(dir, 'baton.service'), 'utf8').replace(/^ExecStart=\S+/m, `ExecStart=${path.join(dir, 'no-such-baton')}`));
  assert.equal(verify(broken).ok, false, 'verify refuses a unit whose executable is missing');

  // --install writes the same unit.
  const unitDir = path.join(dir, 'units');
  const inst = baton(['systemd', '--config', config, '--install', '--unit-dir', unitDir], dir);
  assert.equal(inst.code, 0, inst.stderr);
  assert.match(inst.stdout, /systemctl daemon-reload && systemctl enable --now baton/);
  assert.equal(readFileSync(path.join(unitDir, 'baton.service'), 'utf8'), baton(['systemd', '--config', config], dir).stdout);

  const bad = baton(['systemd', '--user', 'no spaces allowed'], dir);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--user: "no spaces allowed" is not a user name/);
});

/** One request on a fresh connection: the body, or the error code. */
function probe(url: string): Promise<{ ok: boolean; what: string }> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ ok: res.statusCode === 200, what: res.statusCode === 200 ? body.trim() : `HTTP ${res.statusCode}` }));
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, what: e.code ?? e.message }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, what: e.code ?? e.message }));
  });
}

test('a restart the way the unit does it (SIGTERM, then start) keeps the instance pids; the gap is measured', { timeout: 120_000 }, async (t) => {
  const d = await createDaemon();
  t.after(() => d.cleanup());
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
  const before = (await d.status('web')).services[0].instances.map((i: { pid: number }) => i.pid).sort();
  assert.equal(before.length, 2);

  // A client opening a fresh connection per request, as fast as it can, through the restart.
  const outcomes: { at: number; ok: boolean; what: string }[] = [];
  let probing = true;
  const prober = (async () => {
    const end = Date.now() + 60_000;
    while (probing && Date.now() < end) {
      const r = await probe(d.url);
      outcomes.push({ at: performance.now(), ...r });
      if (!r.ok) await new Promise((res) => setTimeout(res, 1)); // refused is instant: don't spin
    }
  })();
  await waitUntil('the prober to see v1', () => outcomes.some((o) => o.ok), 10_000);

  const old = d.proc;
  const exited = new Promise((r) => old.once('exit', r));
  old.kill('SIGTERM');
  await withTimeout(exited, 30_000, 'the daemon to exit after SIGTERM (within TimeoutStopSec, 30 s)');
  // Between the two daemons the instances keep running.
  for (const pid of before) process.kill(pid, 0);
  await d.start();
  const n = outcomes.length;
  await waitUntil('the prober to be answered by the new daemon', () => outcomes.slice(n).some((o) => o.ok), 20_000);
  probing = false;
  await prober;

  const after = (await d.status('web')).services[0];
  assert.deepEqual(after.instances.map((i: { pid: number }) => i.pid).sort(), before, 'same instance pids after the restart');
  await waitUntil('re-adopted instances healthy', async () => (await d.status('web')).services[0].instances.filter((i: { healthy: boolean }) => i.healthy).length === 2, 10_000);

  // The gap: from the last answered request before the failures to the first one after.
  const firstFail = outcomes.findIndex((o) => !o.ok);
  const failures = outcomes.filter((o) => !o.ok);
  const kinds: Record<string, number> = {};
  for (const f of failures) kinds[f.what] = (kinds[f.what] ?? 0) + 1;
  let gapMs = 0;
  if (firstFail > 0) {
    const lastOkBefore = outcomes[firstFail - 1]!.at;
    const firstOkAfter = outcomes.slice(firstFail).find((o) => o.ok)!.at;
    gapMs = firstOkAfter - lastOkBefore;
  }
  t.diagnostic(`daemon restart gap seen by a fresh-connection client: ${gapMs.toFixed(0)} ms, ${failures.length} failed of ${outcomes.length} (${JSON.stringify(kinds)})`);
  assert.ok(outcomes.every((o) => !o.ok || o.what === 'v1'), 'only v1 answered');
});
