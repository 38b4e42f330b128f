// Logs of stopped instances: the newest are kept (baton logs shows them), the
// older ones go with their rotated files; live instances' logs and hook logs stay.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pruneStoppedLogs, stoppedLogs } from '../../src/supervisor/logs.ts';

test('pruneStoppedLogs keeps the newest stopped logs, the live ones and hook logs', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'baton-logprune-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const files: [string, number][] = [
    ['web-old.log', 1000], ['web-old.log.1', 900], ['web-old.log.2', 800],
    ['web-mid.log', 2000],
    ['web-new.log', 3000],
    ['web-live.log', 100],
    ['deploy-1-build.log', 50],
  ];
  for (const [name, t0] of files) {
    await writeFile(path.join(dir, name), `${name}\n`);
    await utimes(path.join(dir, name), t0, t0);
  }
  const live = new Set(['web-live']);
  assert.deepEqual((await stoppedLogs(dir, live, 10)).map((s) => s.id), ['web-new', 'web-mid', 'web-old'], 'newest first, live and hook logs left out');
  assert.deepEqual(await pruneStoppedLogs(dir, live, 2), ['web-old']);
  assert.deepEqual((await readdir(dir)).sort(), ['deploy-1-build.log', 'web-live.log', 'web-mid.log', 'web-new.log']);
  assert.deepEqual(await pruneStoppedLogs(dir, live, 2), [], 'nothing more to prune');
});
