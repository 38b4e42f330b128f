import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertTransition, canTransition, isTerminal, resolveInterrupted, type DeploymentState } from '../../src/deploy/states.ts';

test('the happy path of a blue/green deployment is allowed step by step', () => {
  const path: DeploymentState[] = ['planned', 'preparing', 'starting', 'verifying', 'shifting', 'draining', 'done'];
  for (let i = 1; i < path.length; i++) assert.ok(canTransition(path[i - 1]!, path[i]!), `${path[i - 1]} → ${path[i]}`);
});

test('skipping steps and leaving a terminal state are refused', () => {
  const bad: [DeploymentState, DeploymentState][] = [
    ['planned', 'shifting'],
    ['starting', 'done'],
    ['draining', 'aborting'],
    ['done', 'planned'],
    ['failed', 'starting'],
    ['rolled_back', 'done'],
  ];
  for (const [from, to] of bad) {
    assert.equal(canTransition(from, to), false, `${from} → ${to}`);
    assert.throws(() => assertTransition(from, to), /cannot go from/);
  }
});

test('every non-terminal step before draining can abort', () => {
  for (const s of ['planned', 'preparing', 'starting', 'verifying', 'shifting'] as const) {
    assert.ok(canTransition(s, 'aborting'), s);
  }
  assert.ok(isTerminal('done') && isTerminal('failed') && isTerminal('rolled_back'));
  assert.ok(!isTerminal('aborting'));
});

test('an interrupted deployment resolves by whether the switch was recorded', () => {
  assert.equal(resolveInterrupted('starting', 'r1', 'r2'), 'failed');
  assert.equal(resolveInterrupted('verifying', 'r1', 'r2'), 'failed');
  assert.equal(resolveInterrupted('shifting', 'r2', 'r2'), 'done');
  assert.equal(resolveInterrupted('shifting', 'r1', 'r2'), 'failed');
  assert.equal(resolveInterrupted('draining', 'r2', 'r2'), 'done');
  assert.equal(resolveInterrupted('aborting', 'r1', 'r2'), 'failed');
});

test('a deployment interrupted while draining switched, even if a rollback moved traffic again since', () => {
  assert.equal(resolveInterrupted('draining', 'r1', 'r2'), 'done');
  assert.equal(resolveInterrupted('shifting', 'r1', 'r2'), 'failed');
});

test('refused is terminal; an illegal step throws a coded error', () => {
  assert.ok(isTerminal('refused'));
  assert.throws(() => assertTransition('draining', 'aborting'), (e: any) => e.code === 'INTERNAL' && /from draining to aborting/.test(e.message));
});
