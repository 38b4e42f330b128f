// Health thresholds as a pure state machine.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HealthStatus } from '../../src/supervisor/health-status.ts';

function feed(s: HealthStatus, results: string): (string | null)[] {
  return results.split('').map((c) => s.record(c === '+'));
}

test('starting: healthy after healthyThreshold consecutive successes; failures never make it unhealthy', () => {
  const s = new HealthStatus({ healthyThreshold: 2, unhealthyThreshold: 2 });
  assert.deepEqual(feed(s, '---+-+'), [null, null, null, null, null, null]);
  assert.equal(s.phase, 'starting');
  assert.deepEqual(feed(s, '+'), ['healthy']);
  assert.equal(s.phase, 'healthy');
});

test('healthy → unhealthy after unhealthyThreshold consecutive failures, and back', () => {
  const s = new HealthStatus({ healthyThreshold: 2, unhealthyThreshold: 3 });
  feed(s, '++');
  assert.deepEqual(feed(s, '--+---'), [null, null, null, null, null, 'unhealthy']);
  assert.equal(s.phase, 'unhealthy');
  assert.deepEqual(feed(s, '+-++'), [null, null, null, 'healthy']);
  assert.deepEqual(feed(s, '+'), [null], 'no repeated crossing');
});

test('thresholds below 1 behave as 1', () => {
  const s = new HealthStatus({ healthyThreshold: 0, unhealthyThreshold: 0 });
  assert.deepEqual(feed(s, '+-+'), ['healthy', 'unhealthy', 'healthy']);
});

test('new thresholds (a reload) judge from the next check, keeping the phase and the counts so far', () => {
  const s = new HealthStatus({ healthyThreshold: 1, unhealthyThreshold: 5 });
  assert.deepEqual(feed(s, '+--'), ['healthy', null, null]);
  s.setThresholds({ healthyThreshold: 1, unhealthyThreshold: 3 });
  assert.equal(s.phase, 'healthy');
  assert.deepEqual(feed(s, '-'), ['unhealthy'], 'the third failure in a row crosses the new threshold');
});
