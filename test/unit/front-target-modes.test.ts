// The operator's drains of front targets, as written to <state_dir>/front-targets.json.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../src/core/log.ts';
import { TargetModes } from '../../src/front/target-modes.ts';

test('drains asked at the same time are all kept, in memory and in the file (a fleet undrains its hosts in parallel)', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'baton-modes-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const modes = new TargetModes(dir, silentLogger);
  const names = ['h1', 'h2', 'h3', 'h4'];
  await Promise.all(names.map((n) => modes.set('web', n, { mode: 'drain', since: 1, reason: `drain ${n}` })));
  for (const n of names) assert.equal(modes.get('web', n)?.reason, `drain ${n}`, `${n} drained in memory`);
  const reread = new TargetModes(dir, silentLogger);
  for (const n of names) assert.equal(reread.get('web', n)?.reason, `drain ${n}`, `${n} drained in the file`);
  await Promise.all(names.slice(0, 3).map((n) => modes.set('web', n, null)));
  assert.deepEqual(names.map((n) => modes.get('web', n) !== null), [false, false, false, true]);
  assert.deepEqual(names.map((n) => new TargetModes(dir, silentLogger).get('web', n) !== null), [false, false, false, true]);
});

test('a failed write changes nothing, and the next one still goes through', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'baton-modes-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const modes = new TargetModes(dir, silentLogger);
  await modes.set('web', 'h1', { mode: 'drain', since: 1, reason: 'first' });
  rmSync(dir, { recursive: true, force: true });
  await assert.rejects(modes.set('web', 'h2', { mode: 'drain', since: 2, reason: 'lost' }), /ENOENT/);
  assert.equal(modes.get('web', 'h2'), null);
  assert.equal(modes.get('web', 'h1')?.reason, 'first');
  mkdirSync(dir);
  await modes.set('web', 'h3', { mode: 'drain', since: 3, reason: 'third' });
  assert.equal(new TargetModes(dir, silentLogger).get('web', 'h3')?.reason, 'third');
});
