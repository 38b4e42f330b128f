// Instance.spawn with real processes: healthy, stop (graceful, forced, through
// a wrapper shell), crash on start, never healthy, killed from outside.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BatonError } from '../../src/core/errors.ts';
import { Instance, allocatePort, isSameProcessAlive, readProcStat } from '../../src/supervisor/index.ts';
import { APP, NODE, Recorder, cleanup, get, killAfter, serviceConfig, tempDir } from '../fixtures/sup-harness.ts';
import type { ServiceConfig } from '../../src/config/types.ts';

async function start(t: import('node:test').TestContext, service: ServiceConfig, extraEnv: Record<string, string> = {}) {
  const dir = await tempDir(t);
  const rec = new Recorder();
  const port = await allocatePort();
  const inst = await Instance.spawn(
    { id: 'web-t1', service, release: 'r1', releaseDir: dir, port, logFile: join(dir, 'app.log'), extraEnv },
    rec,
  );
  cleanup(t, inst);
  return { inst, rec, dir, port };
}

test('spawn → healthy → serves → SIGTERM stops it gracefully', async (t) => {
  const { inst, rec, port } = await start(t, serviceConfig({ env: { APP_VERSION: 'v-one' } }));
  assert.equal(inst.state, 'starting');
  assert.equal(readProcStat(inst.pid)?.pgrp, inst.pid, 'instance leads its own process group');
  await inst.waitHealthy(10_000);
  assert.equal(inst.state, 'healthy');
  assert.deepEqual(rec.health, [true]);
  const res = await get(port, '/');
  assert.equal(res.status, 200);
  assert.equal(res.body, 'v-one\n');
  assert.equal((await get(port, '/pid')).body, String(inst.pid), 'exec: the app is the recorded pid');

  const result = await inst.stop();
  assert.equal(result.forced, false);
  assert.equal(inst.state, 'exited');
  assert.equal(isSameProcessAlive(inst.pid, inst.startTime), false);
  assert.equal(rec.exits.length, 1);
  assert.equal(rec.exits[0]?.code, 0, 'the app exited on its own after SIGTERM');
  assert.deepEqual(inst.exit, rec.exits[0]);
  assert.deepEqual(await inst.stop(), result, 'stop() is idempotent');
  assert.match(readFileSync(inst.logFile, 'utf8'), /app v-one listening on \d+/);
});

test('an app ignoring SIGTERM is SIGKILLed after stopTimeoutMs', async (t) => {
  const { inst, rec } = await start(t, serviceConfig({ stopTimeoutMs: 400, env: { APP_IGNORE_SIGTERM: '1' } }));
  await inst.waitHealthy(10_000);
  const result = await inst.stop();
  assert.equal(result.forced, true);
  assert.ok(result.durationMs >= 400, `stopped after ${result.durationMs} ms, before the stop timeout`);
  assert.equal(rec.exits[0]?.signal, 'SIGKILL');
  assert.match(readFileSync(inst.logFile, 'utf8'), /ignoring SIGTERM/);
});

test('the group signal reaches an app under a wrapper shell that does not exec it', async (t) => {
  // The trailing echo keeps dash from exec-ing the app: sh stays the leader.
  const command = `'${NODE}' '${APP}'; echo "wrapper: app exited with $?"`;
  const { inst, rec, port } = await start(t, serviceConfig({ command }));
  await inst.waitHealthy(10_000);
  assert.equal(readFileSync(`/proc/${inst.pid}/comm`, 'utf8').trim(), 'sh');
  const appPid = Number((await get(port, '/pid')).body);
  assert.notEqual(appPid, inst.pid);
  const appStart = readProcStat(appPid)?.startTime ?? '';
  killAfter(t, appPid, appStart);
  const result = await inst.stop();
  assert.equal(result.forced, false);
  assert.equal(isSameProcessAlive(appPid, appStart), false, 'the app behind the wrapper is gone');
  assert.equal(rec.exits.length, 1);
});

test('crash on start: waitHealthy rejects INSTANCE_CRASHED with the log tail', async (t) => {
  const { inst, rec } = await start(t, serviceConfig({ env: { APP_CRASH_ON_START: '1', APP_VERSION: 'v-bad' } }));
  await assert.rejects(inst.waitHealthy(10_000), (err: unknown) => {
    assert.ok(err instanceof BatonError);
    assert.equal(err.code, 'INSTANCE_CRASHED');
    assert.match(err.message, /exited with code 3/);
    assert.ok(err.details.some((l) => l.includes('app v-bad: crashing on start as asked')), err.details.join('\n'));
    return true;
  });
  assert.equal(inst.state, 'exited');
  assert.equal(rec.exits[0]?.code, 3);
  assert.deepEqual(rec.health, []);
  assert.deepEqual(await inst.stop(), { forced: false, durationMs: 0 });
});

test('a command that fails at once is reported exited, not lost', async (t) => {
  const { inst, rec } = await start(t, serviceConfig({ command: 'echo "no such app" >&2; exit 7' }));
  await rec.until(() => rec.exits.length === 1, 5000, 'instanceExited');
  assert.equal(rec.exits[0]?.code, 7);
  await assert.rejects(inst.waitHealthy(5000), (err: unknown) => {
    assert.ok(err instanceof BatonError && err.code === 'INSTANCE_CRASHED');
    // Each line carries the log writer's timestamp.
    assert.ok(err.details.some((l) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} no such app$/.test(l)), err.details.join('\n'));
    return true;
  });
});

test('never healthy: waitHealthy rejects INSTANCE_UNHEALTHY at the timeout', async (t) => {
  const { inst, rec } = await start(t, serviceConfig({ env: { APP_NEVER_HEALTHY: '1' } }));
  const began = Date.now();
  await assert.rejects(inst.waitHealthy(1500), (err: unknown) => {
    assert.ok(err instanceof BatonError);
    assert.equal(err.code, 'INSTANCE_UNHEALTHY');
    assert.ok(err.details.includes('last health check: HTTP 503'), err.details.join('\n'));
    assert.ok(err.details.some((l) => /listening on/.test(l)), err.details.join('\n'));
    return true;
  });
  assert.ok(Date.now() - began >= 1400);
  assert.equal(inst.state, 'starting');
  assert.equal(inst.lastHealthError, 'HTTP 503');
  assert.deepEqual(rec.health, []);
  await inst.stop();
});

test('kill -9 from outside: instanceExited is called', async (t) => {
  const { inst, rec } = await start(t, serviceConfig());
  await inst.waitHealthy(10_000);
  process.kill(inst.pid, 'SIGKILL');
  await rec.until(() => rec.exits.length === 1, 5000, 'instanceExited');
  assert.equal(rec.exits[0]?.signal, 'SIGKILL');
  assert.equal(inst.state, 'exited');
  assert.equal(inst.healthy, false);
});

test('spawn in a missing directory fails with INSTANCE_CRASHED', async (t) => {
  const dir = await tempDir(t);
  await assert.rejects(
    Instance.spawn(
      { id: 'web-x', service: serviceConfig(), release: 'r1', releaseDir: join(dir, 'nope'), port: 1, logFile: join(dir, 'x.log') },
      new Recorder(),
    ),
    (err: unknown) => err instanceof BatonError && err.code === 'INSTANCE_CRASHED',
  );
});
