// /proc/PID/stat parsing and process identity.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { parseProcStat } from '../../src/core/proc.ts';
import { isSameProcessAlive, readProcStat } from '../../src/supervisor/index.ts';

/** A stat line with `comm` and fields 3..52; start time (field 22) = 987654. */
function statLine(pid: number, comm: string, state = 'S'): string {
  const rest = [state, '1', '4242', '4242', '0', '-1', '4194560'];
  while (rest.length < 19) rest.push(String(rest.length));
  rest.push('987654'); // field 22
  while (rest.length < 50) rest.push('0');
  return `${pid} (${comm}) ${rest.join(' ')}\n`;
}

test('parses a plain stat line', () => {
  assert.deepEqual(parseProcStat(statLine(4242, 'node')), { state: 'S', ppid: 1, pgrp: 4242, startTime: '987654' });
});

test('a comm with spaces and ") (" is taken up to the last parenthesis', () => {
  assert.deepEqual(parseProcStat(statLine(7, 'evil) (S 1 2 3 4) x')), { state: 'S', ppid: 1, pgrp: 4242, startTime: '987654' });
  assert.deepEqual(parseProcStat(statLine(7, ') (')), { state: 'S', ppid: 1, pgrp: 4242, startTime: '987654' });
  assert.equal(parseProcStat(statLine(7, 'zz) (', 'Z'))?.state, 'Z');
});

test('rejects text that is not a stat line', () => {
  assert.equal(parseProcStat(''), null);
  assert.equal(parseProcStat('12 (x) S 1 2'), null);
  assert.equal(parseProcStat('no parenthesis at all'), null);
});

test('readProcStat of this process matches what we know of it', () => {
  const stat = readProcStat(process.pid);
  assert.ok(stat);
  assert.equal(stat.ppid, process.ppid);
  assert.match(stat.startTime, /^\d+$/);
  assert.ok(isSameProcessAlive(process.pid, stat.startTime));
  assert.equal(isSameProcessAlive(process.pid, String(Number(stat.startTime) + 1)), false, 'another start time = another process');
  assert.equal(readProcStat(0), null);
  assert.equal(readProcStat(-1), null);
});

test('a zombie is not alive', async (t) => {
  // A child that exits while this thread is busy stays a zombie until the event loop reaps it.
  const child = spawn('/bin/sh', ['-c', 'exit 0'], { stdio: 'ignore' });
  t.after(() => child.kill('SIGKILL'));
  const pid = child.pid;
  assert.ok(pid);
  const startTime = readProcStat(pid)?.startTime ?? '';
  const deadline = Date.now() + 5000;
  let state = readProcStat(pid)?.state;
  while (state !== 'Z' && Date.now() < deadline) state = readProcStat(pid)?.state; // busy wait: the loop must not run
  assert.equal(state, 'Z', 'child did not become a zombie within 5 s');
  assert.equal(isSameProcessAlive(pid, startTime), false);
  await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(readProcStat(pid), null, 'reaped');
});
