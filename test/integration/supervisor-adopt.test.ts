// Re-adopting an instance left running by a daemon that exited: it is not our
// child, so liveness comes from /proc polling.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { Instance, allocatePort, isSameProcessAlive, readProcStat, type InstanceRecord } from '../../src/supervisor/index.ts';
import { NODE, Recorder, get, killAfter, serviceConfig, tempDir } from '../fixtures/sup-harness.ts';

const SPAWNER = new URL('../fixtures/sup-spawn-detached.ts', import.meta.url).pathname;

/** Start an instance from a separate node process that then exits, as a daemon would. */
async function spawnOrphan(t: TestContext): Promise<InstanceRecord> {
  const dir = await tempDir(t);
  const port = await allocatePort();
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(NODE, [SPAWNER, String(port), join(dir, 'app.log'), dir], { timeout: 15_000 }, (err, out, errOut) => {
      if (err) reject(new Error(`spawner failed: ${err.message}\n${errOut}`));
      else resolve(out);
    });
  });
  const record = JSON.parse(stdout.trim()) as InstanceRecord;
  killAfter(t, record.pid, record.startTime);
  return record;
}

test('adopt an instance started by a process that has exited: healthy, served, stopped', async (t) => {
  const record = await spawnOrphan(t);
  const stat = readProcStat(record.pid);
  assert.ok(stat, 'the instance outlived its spawner');
  assert.notEqual(stat.ppid, process.pid, 'not our child');

  const rec = new Recorder();
  const inst = Instance.adopt(record, serviceConfig(), rec);
  assert.ok(inst, 'adopted');
  t.after(() => inst.detach());
  assert.equal(inst.state, 'starting');
  assert.deepEqual(inst.toRecord(), record);
  assert.ok(Math.abs(inst.startedAt - Date.now()) < 60_000, `startedAt ${inst.startedAt} derived from /proc`);
  await inst.waitHealthy(5000);
  assert.deepEqual(rec.health, [true]);
  assert.equal((await get(record.port, '/pid')).body, String(record.pid));

  const result = await inst.stop();
  assert.equal(result.forced, false);
  assert.equal(isSameProcessAlive(record.pid, record.startTime), false);
  assert.equal(inst.state, 'exited');
  assert.equal(rec.exits.length, 1);
  assert.equal(rec.exits[0]?.code, null, 'the exit code of a non-child is unknown');
});

test('an adopted instance killed from outside is seen exited by polling', async (t) => {
  const record = await spawnOrphan(t);
  const rec = new Recorder();
  const inst = Instance.adopt(record, serviceConfig(), rec);
  assert.ok(inst);
  t.after(() => inst.detach());
  process.kill(record.pid, 'SIGKILL');
  await rec.until(() => rec.exits.length === 1, 3000, 'instanceExited of the adopted instance');
  assert.equal(inst.state, 'exited');
});

test('adopt returns null for a dead pid or a pid with another start time', async (t) => {
  const service = serviceConfig();
  const rec = new Recorder();
  const dir = await tempDir(t);
  const base: InstanceRecord = { id: 'web-old', service: 'web', release: 'r1', releaseDir: dir, pid: 0, startTime: '0', port: 1, logFile: join(dir, 'x.log') };

  const child = spawn('/bin/true', { stdio: 'ignore' });
  const pid = child.pid;
  assert.ok(pid);
  const startTime = readProcStat(pid)?.startTime ?? '';
  await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(Instance.adopt({ ...base, pid, startTime }, service, rec), null, 'dead pid');

  const self = readProcStat(process.pid);
  assert.ok(self);
  assert.equal(Instance.adopt({ ...base, pid: process.pid, startTime: String(Number(self.startTime) + 1) }, service, rec), null, 'pid reused by another process');
  assert.equal(Instance.adopt({ ...base, pid: 0 }, service, rec), null, 'no pid');
});
