// Log tail (from the end of big files) and follow (tail -f).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, open, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { followLog, tailLog } from '../../src/supervisor/index.ts';

async function dir(t: import('node:test').TestContext): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'baton-logs-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

test('tailLog: last lines, with or without a final newline; missing file = []', async (t) => {
  const d = await dir(t);
  const f = join(d, 'a.log');
  assert.deepEqual(await tailLog(f, 5), []);
  await writeFile(f, '');
  assert.deepEqual(await tailLog(f, 5), []);
  await writeFile(f, 'one\ntwo\nthree\n');
  assert.deepEqual(await tailLog(f, 2), ['two', 'three']);
  assert.deepEqual(await tailLog(f, 10), ['one', 'two', 'three']);
  assert.deepEqual(await tailLog(f, 0), []);
  await appendFile(f, 'partial');
  assert.deepEqual(await tailLog(f, 2), ['three', 'partial']);
  await writeFile(f, '\n\nx\n');
  assert.deepEqual(await tailLog(f, 3), ['', '', 'x'], 'empty lines are lines');
});

test('tailLog reads a big file from the end; lines across chunk borders and UTF-8 stay whole', async (t) => {
  const d = await dir(t);
  const f = join(d, 'big.log');
  const lines = Array.from({ length: 200_000 }, (_, i) => `line ${i} é€ ${'x'.repeat(i % 50)}`);
  await writeFile(f, lines.join('\n') + '\n'); // ~10 MB
  assert.deepEqual(await tailLog(f, 20), lines.slice(-20));
  assert.deepEqual(await tailLog(f, 3000), lines.slice(-3000), 'more than one 64 KiB chunk');
});

test('tailLog reads only the end: the tail of an 8 TiB (sparse) file', async (t) => {
  // Reading this file from its start could not finish; reading from the end takes one chunk.
  const d = await dir(t);
  const f = join(d, 'huge.log');
  const fh = await open(f, 'w');
  await fh.truncate(8 * 2 ** 40);
  await fh.close();
  await appendFile(f, '\nfirst\nlast but one\nlast\n');
  assert.deepEqual(await tailLog(f, 2), ['last but one', 'last']);
});

test('followLog: only new lines, partial lines held until complete, truncation starts over', async (t) => {
  const d = await dir(t);
  const f = join(d, 'f.log');
  await writeFile(f, 'old line\n');
  const got: string[] = [];
  let wake: (() => void) | null = null;
  const until = (n: number, what: string, timeoutMs = 3000): Promise<void> =>
    new Promise((resolve, reject) => {
      if (got.length >= n) return resolve();
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(got)}`)), timeoutMs);
      wake = () => {
        if (got.length < n) return;
        clearTimeout(timer);
        resolve();
      };
    });
  const ac = new AbortController();
  t.after(() => ac.abort());
  const done = followLog(f, (lines) => {
    got.push(...lines);
    wake?.();
  }, ac.signal);
  // followLog starts at the end as of its first look at the file, which we cannot observe:
  // append probe lines until one arrives, then start from a known point.
  for (let i = 0; got.length === 0; i++) {
    assert.ok(i < 20, 'followLog never delivered a probe line');
    await appendFile(f, `probe ${i}\n`);
    await until(1, 'a probe line', 250).catch(() => {});
  }
  assert.ok(!got.includes('old line'), 'starts at the end');
  got.length = 0;
  await appendFile(f, 'a\nb');
  await until(1, 'line a');
  assert.deepEqual(got, ['a']);
  await appendFile(f, 'c\n€\n');
  await until(3, 'lines bc and €');
  assert.deepEqual(got, ['a', 'bc', '€']);
  await truncate(f, 0);
  // Shorter than before, so the truncation shows even if both land between two reads.
  await appendFile(f, 'new\n');
  await until(4, 'line after truncation');
  assert.deepEqual(got, ['a', 'bc', '€', 'new']);
  await appendFile(f, 'tail without newline');
  ac.abort();
  await done;
  assert.equal(got.at(-1), 'tail without newline', 'partial line delivered at the end');
});

test('followLog of a file created later reads it from the start', async (t) => {
  const d = await dir(t);
  const f = join(d, 'later.log');
  const ac = new AbortController();
  t.after(() => ac.abort());
  const got: string[] = [];
  let resolveFirst!: () => void;
  const first = new Promise<void>((resolve) => (resolveFirst = resolve));
  const done = followLog(f, (lines) => {
    got.push(...lines);
    resolveFirst();
  }, ac.signal);
  await writeFile(f, 'hello\n');
  const timer = setTimeout(() => ac.abort(), 3000);
  await Promise.race([first, done]);
  clearTimeout(timer);
  ac.abort();
  await done;
  assert.deepEqual(got, ['hello']);
});
