import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CanaryRun, describeStep } from '../../src/deploy/canary.ts';
import { ReleaseGroup } from '../../src/deploy/release-group.ts';

const run = (): CanaryRun => new CanaryRun(new ReleaseGroup('r2', '/x', 'incoming'), [{ kind: 'weight', weight: 10 }, { kind: 'pause_until_promoted' }]);

test('a wait ends at its timeout, or at a signal', async () => {
  const c = run();
  assert.equal(await c.wait(10, 'pause'), 'timeout');
  const p = c.wait(Infinity, 'promote');
  assert.equal(c.waiting, 'promote');
  c.send('promote');
  assert.equal(await p, 'promote');
  assert.equal(c.waiting, null);
});

test('a signal sent while the rollout is busy is kept for its next wait; abort wins', async () => {
  const c = run();
  c.send('promote');
  c.send('abort', 'analysis failed');
  c.send('promote_full');
  assert.equal(await c.wait(Infinity, 'pause'), 'abort');
  assert.equal(c.abortReason, 'analysis failed');
  c.send('promote_full');
  assert.equal(c.takePending(), 'promote_full');
  assert.equal(c.takePending(), null);
});

test('steps read as an operator would say them', () => {
  assert.deepEqual(
    [{ kind: 'weight', weight: 5 } as const, { kind: 'pause', ms: 30_000 } as const, { kind: 'pause_until_promoted' } as const, { kind: 'analysis', windowMs: 60_000 } as const].map(describeStep),
    ['5%', 'pause 30.0s', 'pause until promoted', 'analysis 1m00s'],
  );
});
