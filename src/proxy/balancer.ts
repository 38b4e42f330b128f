// Target selection policies: which target of a service gets the next request. Pure.

import type { BalancePolicy } from '../config/types.ts';

/** What a policy needs to know about a target. */
export interface Candidate {
  readonly inflight: number;
}

/** A service's rotating start position, shared across routing snapshots. */
export interface Rotation {
  next: number;
}

/**
 * Index of the candidate to use, or -1 when there is none left (empty list, or
 * every candidate is in `excluded`).
 *
 * round_robin: the first non-excluded candidate from `cursor` on.
 * least_outstanding: the fewest in-flight requests; ties go to the first one
 * from `cursor` on, so equally loaded targets take turns.
 */
export function pickIndex(
  policy: BalancePolicy,
  candidates: readonly Candidate[],
  cursor: number,
  excluded: readonly Candidate[] | null,
): number {
  const n = candidates.length;
  if (n === 0) return -1;
  const start = cursor % n;
  if (policy === 'round_robin') {
    for (let i = 0; i < n; i++) {
      const idx = (start + i) % n;
      if (excluded === null || !excluded.includes(candidates[idx]!)) return idx;
    }
    return -1;
  }
  let best = -1;
  let bestLoad = Infinity;
  for (let i = 0; i < n; i++) {
    const idx = (start + i) % n;
    const c = candidates[idx]!;
    if (c.inflight < bestLoad && (excluded === null || !excluded.includes(c))) {
      best = idx;
      bestLoad = c.inflight;
    }
  }
  return best;
}

/**
 * Pick from `candidates`. A first attempt advances the rotation; a retry
 * (`excluded` given) does not, so a target that refuses connections does not
 * shift the turn of the others.
 */
export function pick<T extends Candidate>(
  policy: BalancePolicy,
  candidates: readonly T[],
  rotation: Rotation,
  excluded: readonly Candidate[] | null,
): T | undefined {
  const idx = pickIndex(policy, candidates, rotation.next, excluded);
  // Wrap well before 2^31 so the counter stays a small integer.
  if (excluded === null) rotation.next = (rotation.next + 1) & 0x3fffffff;
  return idx < 0 ? undefined : candidates[idx];
}
