import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pick, pickIndex, type Candidate } from '../../src/proxy/balancer.ts';
import type { BalancePolicy } from '../../src/config/types.ts';

const c = (...loads: number[]): Candidate[] => loads.map((inflight) => ({ inflight }));

test('pickIndex: selection table', () => {
  const three = c(0, 0, 0);
  const cases: { name: string; policy: BalancePolicy; cands: Candidate[]; cursor: number; excluded: number[] | null; want: number }[] = [
    { name: 'no candidates', policy: 'round_robin', cands: [], cursor: 0, excluded: null, want: -1 },
    { name: 'no candidates (lo)', policy: 'least_outstanding', cands: [], cursor: 5, excluded: null, want: -1 },
    { name: 'rr from cursor', policy: 'round_robin', cands: three, cursor: 1, excluded: null, want: 1 },
    { name: 'rr wraps cursor', policy: 'round_robin', cands: three, cursor: 5, excluded: null, want: 2 },
    { name: 'rr ignores load', policy: 'round_robin', cands: c(9, 0, 0), cursor: 0, excluded: null, want: 0 },
    { name: 'rr skips excluded', policy: 'round_robin', cands: three, cursor: 0, excluded: [0], want: 1 },
    { name: 'rr skips excluded, wraps', policy: 'round_robin', cands: three, cursor: 2, excluded: [2], want: 0 },
    { name: 'rr all excluded', policy: 'round_robin', cands: three, cursor: 0, excluded: [0, 1, 2], want: -1 },
    { name: 'lo fewest in flight', policy: 'least_outstanding', cands: c(3, 1, 2), cursor: 0, excluded: null, want: 1 },
    { name: 'lo tie from cursor', policy: 'least_outstanding', cands: c(1, 1, 1), cursor: 2, excluded: null, want: 2 },
    { name: 'lo tie after cursor', policy: 'least_outstanding', cands: c(0, 5, 0), cursor: 1, excluded: null, want: 2 },
    { name: 'lo excluded best', policy: 'least_outstanding', cands: c(3, 0, 2), cursor: 0, excluded: [1], want: 2 },
    { name: 'lo all excluded', policy: 'least_outstanding', cands: c(0, 0), cursor: 0, excluded: [0, 1], want: -1 },
    { name: 'lo single', policy: 'least_outstanding', cands: c(7), cursor: 3, excluded: null, want: 0 },
  ];
  for (const k of cases) {
    const excluded = k.excluded === null ? null : k.excluded.map((i) => k.cands[i]!);
    assert.equal(pickIndex(k.policy, k.cands, k.cursor, excluded), k.want, k.name);
  }
});

test('pick: equal loads take turns; rotation advances', () => {
  for (const policy of ['round_robin', 'least_outstanding'] as const) {
    const cands = c(0, 0, 0);
    const rotation = { next: 0 };
    const got = Array.from({ length: 6 }, () => cands.indexOf(pick(policy, cands, rotation, null)!));
    assert.deepEqual(got, [0, 1, 2, 0, 1, 2], policy);
    assert.equal(rotation.next, 6);
  }
});

test('pick: a retry (with exclusions) does not advance the rotation', () => {
  const cands = c(0, 0, 0);
  const rotation = { next: 4 };
  assert.equal(pick('round_robin', cands, rotation, [cands[1]!]), cands[2]);
  assert.equal(rotation.next, 4);
  assert.equal(pick('round_robin', cands, rotation, null), cands[1]);
  assert.equal(rotation.next, 5);
});

test('pick: undefined when nothing is left', () => {
  const rotation = { next: 0 };
  assert.equal(pick('least_outstanding', [], rotation, null), undefined);
  const one = c(0);
  assert.equal(pick('round_robin', one, rotation, one), undefined);
});

test('weighted round robin: weights 3:1:0.5 give those shares, interleaved (smooth)', () => {
  const cands: Candidate[] = [{ inflight: 0, weight: 3 }, { inflight: 0, weight: 1 }, { inflight: 0, weight: 0.5 }];
  const rot = { next: 0 };
  const seen = [0, 0, 0];
  const order: number[] = [];
  for (let i = 0; i < 90; i++) {
    const t = pick('weighted_round_robin', cands, rot, null)!;
    const idx = cands.indexOf(t);
    seen[idx]!++;
    if (i < 9) order.push(idx);
  }
  assert.deepEqual(seen, [60, 20, 10]);
  // Never three of the heavy one in a row at the start: smooth, not a block of a a a.
  assert.ok(!order.join('').includes('000'), `order ${order.join('')}`);
});

test('weighted least outstanding: load per unit of weight first, weights break ties', () => {
  const heavy: Candidate = { inflight: 2, weight: 4 };
  const light: Candidate = { inflight: 1, weight: 1 };
  // 2/4 < 1/1: the heavy one, though it has more in flight.
  assert.equal(pick('weighted_least_outstanding', [light, heavy], { next: 0 }, null), heavy);
  const a: Candidate = { inflight: 0, weight: 2 };
  const b: Candidate = { inflight: 0, weight: 1 };
  const n = new Map<Candidate, number>([[a, 0], [b, 0]]);
  for (let i = 0; i < 30; i++) {
    const t = pick('weighted_least_outstanding', [a, b], { next: 0 }, null)!;
    n.set(t, n.get(t)! + 1);
  }
  assert.deepEqual([n.get(a), n.get(b)], [20, 10]);
});

test('a weighted retry skips the excluded and changes no score', () => {
  const cands: Candidate[] = [{ inflight: 0, weight: 3, swrr: 0 }, { inflight: 0, weight: 1, swrr: 0 }];
  assert.equal(pick('weighted_round_robin', cands, { next: 0 }, [cands[0]!]), cands[1]);
  assert.deepEqual(cands.map((x) => x.swrr), [0, 0]);
  assert.equal(pick('weighted_round_robin', cands, { next: 0 }, [cands[0]!, cands[1]!]), undefined);
});
