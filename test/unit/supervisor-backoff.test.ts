// Restart backoff: doubling, cap, reset after a quiet period.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff } from '../../src/supervisor/index.ts';

test('doubles from baseMs up to maxMs', () => {
  const b = new Backoff({ baseMs: 100, maxMs: 1000, now: () => 0 });
  assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000, 1000]);
  b.reset();
  assert.equal(b.next(), 100);
});

test('starts over once an instance stayed up resetAfterMs after its restart', () => {
  let now = 0;
  const b = new Backoff({ baseMs: 100, maxMs: 10_000, resetAfterMs: 5000, now: () => now });
  assert.equal(b.next(), 100); // restarted at 100
  now = 200;
  assert.equal(b.next(), 200); // restarted at 400
  now = 5399; // up 4999 ms: still counts as a crash loop
  assert.equal(b.next(), 400); // restarted at 5799
  now = 5799 + 5000;
  assert.equal(b.next(), 100);
});

test('defaults are sane', () => {
  const b = new Backoff({ now: () => 0 });
  assert.equal(b.next(), 500);
  for (let i = 0; i < 100; i++) b.next();
  assert.equal(b.next(), 30_000);
});
