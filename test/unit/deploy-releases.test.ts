import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, readFile, rm, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { copyRelease, makeReleaseId, releasesToPrune } from '../../src/deploy/releases.ts';

test('release ids are sortable, readable and unique', () => {
  const now = new Date('2026-11-22T13:45:01.123Z');
  assert.equal(makeReleaseId('/x/app-v2', now, () => false), '20261122-134501-app-v2');
  const taken = new Set(['20261122-134501-app-v2']);
  assert.equal(makeReleaseId('/x/app-v2/', now, (id) => taken.has(id)), '20261122-134501-app-v2-2');
  assert.equal(makeReleaseId('/x/my app!', now, () => false), '20261122-134501-my-app-');
});

test('pruning keeps the newest N and never the current or standby release', () => {
  const rs = ['r6', 'r5', 'r4', 'r3', 'r2', 'r1'].map((id) => ({ id }));
  assert.deepEqual(releasesToPrune(rs, 2, ['r6', 'r1']).map((r) => r.id), ['r3', 'r2']);
  assert.deepEqual(releasesToPrune(rs, 10, [null]).map((r) => r.id), []);
  assert.deepEqual(releasesToPrune(rs, 0, ['r2', null]).map((r) => r.id), ['r6', 'r5', 'r4', 'r3', 'r1']);
});

test('copyRelease copies a tree without .git and refuses a missing or non-directory source', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'baton-rel-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const src = path.join(dir, 'src');
  await mkdir(path.join(src, 'lib'), { recursive: true });
  await mkdir(path.join(src, '.git'));
  await writeFile(path.join(src, 'server.js'), 'console.log(1)');
  await writeFile(path.join(src, 'lib', 'a.txt'), 'a');
  const target = path.join(dir, 'releases', 'web', 'r1');
  await copyRelease(src, target);
  assert.equal(await readFile(path.join(target, 'lib', 'a.txt'), 'utf8'), 'a');
  assert.deepEqual((await readdir(target)).sort(), ['lib', 'server.js']);
  await assert.rejects(copyRelease(path.join(dir, 'nope'), path.join(dir, 'r2')), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'RELEASE_INVALID');
    assert.match(e.message, /nope.*cannot be read/);
    return true;
  });
  await assert.rejects(copyRelease(path.join(src, 'server.js'), path.join(dir, 'r3')), /is not a directory/);
});
