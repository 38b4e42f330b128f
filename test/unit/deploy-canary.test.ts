import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CanaryRun, describeStep, parseSteps } from '../../src/deploy/canary.ts';
import { ReleaseGroup } from '../../src/deploy/release-group.ts';

const run = (): CanaryRun => new CanaryRun(new ReleaseGroup('r2', '/x', 'incoming'), [{ kind: 'weight', weight: 10 }, { kind: 'pause_until_promoted' }]);

test('a wait ends at its timeout, or at a signal', async () => {
  const c = run();
  assert.equal(await c.wait(10, 'pause'), 'timeout');
  const p = c.wait(Infinity, 'promote');
  assert.equal(c.waiting, 'promote');
  void c.send('promote');
  assert.equal(await p, 'promote');
  assert.equal(c.waiting, null);
});

test('a signal sent while the rollout is busy is kept for its next wait; abort wins', async () => {
  const c = run();
  void c.send('promote');
  void c.send('abort', 'analysis failed');
  void c.send('promote_full');
  assert.equal(await c.wait(Infinity, 'pause'), 'abort');
  assert.equal(c.abortReason, 'analysis failed');
  void c.send('promote_full');
  assert.equal(c.takePending(), 'promote_full');
  assert.equal(c.takePending(), null);
});

test('steps read as an operator would say them', () => {
  assert.deepEqual(
    [{ kind: 'weight', weight: 5 } as const, { kind: 'pause', ms: 30_000 } as const, { kind: 'pause_until_promoted' } as const, { kind: 'analysis', windowMs: 60_000 } as const].map(describeStep),
    ['5%', 'pause 30.0s', 'pause until promoted', 'analysis 1m00s'],
  );
});

test('--steps: percents only take the default shape; explicit items are taken as given; the end is 100%', () => {
  assert.deepEqual(parseSteps('10,50', 60_000), [
    { kind: 'weight', weight: 10 },
    { kind: 'analysis', windowMs: 60_000 },
    { kind: 'weight', weight: 50 },
    { kind: 'analysis', windowMs: 60_000 },
    { kind: 'weight', weight: 100 },
  ]);
  assert.deepEqual(parseSteps('5%, pause:30s, 50, promote', 60_000), [
    { kind: 'weight', weight: 5 },
    { kind: 'pause', ms: 30_000 },
    { kind: 'weight', weight: 50 },
    { kind: 'pause_until_promoted' },
    { kind: 'weight', weight: 100 },
  ]);
  assert.deepEqual(parseSteps('20,analysis:2m,100', 60_000), [
    { kind: 'weight', weight: 20 },
    { kind: 'analysis', windowMs: 120_000 },
    { kind: 'weight', weight: 100 },
  ]);
});

test('--steps: bad plans get a message naming the item', () => {
  const bad = (text: string, re: RegExp): void => {
    assert.throws(() => parseSteps(text, 60_000), (e: any) => e.code === 'BAD_REQUEST' && re.test(e.message), text);
  };
  bad('50,10', /weights must grow: 10 after 50/);
  bad('0', /"0" is not a whole percent from 1 to 100/);
  bad('150', /"150" is not a whole percent/);
  bad('12.5', /"12.5" is not a whole percent/);
  bad('10,,50', /an empty item/);
  bad('10,soon', /"soon" is not a percent, analysis\[:DURATION\], pause:DURATION or promote/);
  bad('10,pause:abc', /"abc" in "pause:abc" is not a duration/);
  bad('promote', /no weight given/);
  bad('', /an empty item/);
});
