import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReleaseGroup, canMove, isKeptAtSize, type GroupRole } from '../../src/deploy/release-group.ts';

const ROLES: GroupRole[] = ['incoming', 'current', 'canary', 'draining', 'standby', 'retiring'];

test('a group goes incoming → current → draining → standby, and back to current for a rollback', () => {
  const g = new ReleaseGroup('r1', '/x', 'incoming');
  for (const to of ['current', 'draining', 'standby', 'current', 'draining', 'current', 'retiring'] as const) {
    g.moveTo(to);
    assert.equal(g.role, to);
  }
});

test('an illegal role change throws a coded error and changes nothing', () => {
  const g = new ReleaseGroup('r1', '/x', 'incoming');
  assert.throws(() => g.moveTo('standby'), (e: any) => e.code === 'INTERNAL' && /r1 cannot go from incoming to standby/.test(e.message));
  assert.equal(g.role, 'incoming');
  g.moveTo('retiring');
  for (const to of ROLES) assert.throws(() => g.moveTo(to), /cannot go from retiring/, `retiring → ${to}`);
});

test('every role can retire except retiring itself; only routed or warm groups are kept at size', () => {
  for (const from of ROLES) assert.equal(canMove(from, 'retiring'), from !== 'retiring', from);
  assert.ok(!canMove('canary', 'draining'), 'a canary rolled back retires; it never drains as a previous release');
  assert.ok(!canMove('standby', 'draining'));
  assert.deepEqual(ROLES.filter(isKeptAtSize), ['current', 'canary', 'standby']);
});
