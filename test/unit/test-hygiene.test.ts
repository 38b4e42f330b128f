// Tests that never flake, and a suite that does not wait for nothing: a
// wall-clock upper bound asserted on a measured duration (it failed here on a
// loaded machine) is refused anywhere in test/, and so is a timer raced
// against a promise and left pending (it kept each test file's process alive
// until it fired: 15 s per file that stopped a daemon).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');

function testFiles(): string[] {
  return readdirSync(path.join(root, 'test'), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.(ts|mjs)$/.test(e.name))
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
    .filter((f) => f !== 'test/unit/test-hygiene.test.ts');
}

/** Lines of test/ matching `re`, as "file:line: text". */
function find(re: RegExp): string[] {
  const found: string[] = [];
  for (const file of testFiles()) {
    readFileSync(path.join(root, file), 'utf8').split('\n').forEach((line, i) => {
      if (re.test(line)) found.push(`${file}:${i + 1}: ${line.trim()}`);
    });
  }
  return found;
}

test('no wall-clock upper bound is asserted on a measured duration', () => {
  // assert.ok(took < 1000), assert.ok(result.durationMs < 800), assert.ok(Date.now() - t0 < 10_000) …
  const re = /assert\.(ok|equal|strictEqual)\([^;]*\b([A-Za-z]*(Ms|ms)|took|elapsed|waited|(Date|performance)\.now\(\) - [A-Za-z0-9_.]+)\s*<=?\s*[0-9A-Z_]/;
  assert.deepEqual(find(re), [], 'assert what caused the timing (an event, a counter, a message), not how long it took');
});

test('the check above finds what it looks for', () => {
  const re = /assert\.(ok|equal|strictEqual)\([^;]*\b([A-Za-z]*(Ms|ms)|took|elapsed|waited|(Date|performance)\.now\(\) - [A-Za-z0-9_.]+)\s*<=?\s*[0-9A-Z_]/;
  for (const bad of ['assert.ok(took < 500);', 'assert.ok(result.durationMs >= 1 && result.durationMs < 800, `x`);', "assert.ok(Date.now() - started < 2500, 'x');", 'assert.ok(afterMs < 3000);']) {
    assert.match(bad, re, bad);
  }
  for (const good of ['assert.ok(took >= 500);', 'assert.ok(count < 10);', 'assert.ok(p > 0 && p < 65536);']) assert.doesNotMatch(good, re, good);
});

/** `Promise.race([..., new Promise((r) => setTimeout(r, 15_000))])`: the losing timer stays armed. */
const RACED_TIMER = /Promise\.race\(.*setTimeout\(/;

test('no timer is raced against a promise and left pending', () => {
  assert.deepEqual(find(RACED_TIMER), [], 'use settlesWithin() or withTimeout() from test/helpers/timeouts.ts: they clear their timer');
});

test('the raced-timer check finds what it looks for', () => {
  for (const bad of [
    "await Promise.race([new Promise((r) => p.once('exit', r)), new Promise((r) => setTimeout(r, 15_000))]);",
    'return Promise.race([gone, new Promise<void>((r) => setTimeout(r, 5000))]).then(() => {',
    "await Promise.race([exited, new Promise((_, rej) => setTimeout(() => rej(new Error('x')), 30_000))]);",
  ]) {
    assert.match(bad, RACED_TIMER, bad);
  }
  for (const good of ['await settlesWithin(exited, 15_000);', 'await Promise.race([a, b]);', 'await new Promise((r) => setTimeout(r, 50));']) assert.doesNotMatch(good, RACED_TIMER, good);
});
