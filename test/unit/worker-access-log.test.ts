// A proxy worker's access log lines on their way to the control plane
// (src/daemon/worker-access-log.ts): whole lines in batches, and a bound on
// what waits (batched, or sent and still in the worker's IPC queue) beyond
// which lines are refused (the access log counts them dropped).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AccessLineBatcher } from '../../src/daemon/worker-access-log.ts';
import { MAX_PENDING } from '../../src/proxy/access-log.ts';

interface Sent {
  text: string;
  count: number;
  done: () => void;
}

function batcher(): { b: AccessLineBatcher; sent: Sent[] } {
  const sent: Sent[] = [];
  return { b: new AccessLineBatcher((text, count, done) => sent.push({ text, count, done })), sent };
}

test('lines go out whole, in order, as one batch per flush (nothing sent for an empty one)', () => {
  const { b, sent } = batcher();
  assert.equal(b.push('{"a":1}\n'), true);
  assert.equal(b.push('{"a":2}\n'), true);
  assert.equal(sent.length, 0, 'batched, not one message per line');
  b.flush();
  b.flush();
  assert.deepEqual(sent.map(({ text, count }) => ({ text, count })), [{ text: '{"a":1}\n{"a":2}\n', count: 2 }]);
});

test('a batch of 64 KiB goes out at once, without waiting for the timer', () => {
  const { b, sent } = batcher();
  const line = `${'x'.repeat(1023)}\n`;
  for (let i = 0; i < 63; i++) b.push(line);
  assert.equal(sent.length, 0);
  b.push(line);
  assert.equal(sent.length, 1);
  assert.equal(sent[0]!.count, 64);
  b.flush();
});

test('beyond 1 MiB waiting (batched or sent and not yet written), lines are refused; room comes back as batches leave', () => {
  const { b, sent } = batcher();
  const line = `${'y'.repeat(1023)}\n`;
  let taken = 0;
  while (b.push(line)) taken++;
  assert.equal(taken, Math.floor(MAX_PENDING / line.length));
  assert.equal(b.push(line), false, 'still refused while nothing left');
  b.flush();
  assert.equal(b.push(line), false, 'sent but still queued counts too');
  for (const s of sent) s.done();
  assert.equal(b.push(line), true, 'taken again once the batches left the process');
  b.flush();
  assert.equal(sent.reduce((n, s) => n + s.count, 0), taken + 1);
});
