import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, mkdir, writeFile, readFile, rm, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { contentReleaseId, copyRelease, releasesToPrune } from '../../src/deploy/releases.ts';

test('a directory release is named by its content: same content, same id; any change, another id', async (t) => {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'baton-rid-'));
  t.after(() => rm(tmp, { recursive: true, force: true }));
  const make = async (where: string, files: Record<string, string>): Promise<string> => {
    const dir = path.join(tmp, where, 'my app!');
    for (const [f, text] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, f)), { recursive: true });
      await writeFile(path.join(dir, f), text);
    }
    return dir;
  };
  const a = await contentReleaseId(await make('a', { 'server.js': 'v1', 'lib/x.js': 'x' }));
  assert.match(a, /^my-app--[0-9a-f]{12}$/);
  assert.equal(await contentReleaseId(await make('b', { 'lib/x.js': 'x', 'server.js': 'v1', '.git/HEAD': 'ref' })), a, 'same content (VCS data left out): same id');
  assert.notEqual(await contentReleaseId(await make('c', { 'server.js': 'v2', 'lib/x.js': 'x' })), a, 'a changed byte');
  assert.notEqual(await contentReleaseId(await make('d', { 'server.js': 'v1', 'lib/y.js': 'x' })), a, 'a renamed file');
  const e = await make('e', { 'server.js': 'v1', 'lib/x.js': 'x' });
  await chmod(path.join(e, 'server.js'), 0o755);
  assert.notEqual(await contentReleaseId(e), a, 'a changed mode');
  await assert.rejects(contentReleaseId(path.join(tmp, 'missing')), /cannot be read/);
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
