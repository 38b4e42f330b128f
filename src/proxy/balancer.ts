// Target selection policies: which target of a service gets the next request. Pure.

import type { BalancePolicy } from '../config/types.ts';

/**
 * A policy as the hot path applies it: the configured one, or its weighted
 * form when a service's targets carry different weights (front services: the
 * hosts behind baton, HAProxy's `weight`). Equal weights keep the plain form.
 */
export type PickPolicy = BalancePolicy | 'weighted_round_robin' | 'weighted_least_outstanding';

/** What a policy needs to know about a target. */
export interface Candidate {
  readonly inflight: number;
  /** Relative share of new requests (weighted policies only; default 1). */
  readonly weight?: number;
  /** Smooth weighted round robin's running score (weighted policies only; mutated by a pick). */
  swrr?: number;
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
  policy: PickPolicy,
  candidates: readonly Candidate[],
  cursor: number,
  excluded: readonly Candidate[] | null,
): number {
  const n = candidates.length;
  if (n === 0) return -1;
  if (policy === 'weighted_round_robin') return pickWeighted(false, candidates, excluded);
  if (policy === 'weighted_least_outstanding') return pickWeighted(true, candidates, excluded);
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
 * Smooth weighted round robin (nginx's): every pick adds each competitor's
 * weight to its score, takes the highest score and subtracts the sum of the
 * weights from it, so weights 3:1 give a a a b, interleaved, with no state but
 * the scores. With least_outstanding only the targets with the fewest
 * in-flight requests per unit of weight compete: under load a heavier target
 * carries proportionally more, and when idle (ties) the weights decide the turn.
 * A retry (`excluded` given) changes no score.
 */
function pickWeighted(leastOutstanding: boolean, candidates: readonly Candidate[], excluded: readonly Candidate[] | null): number {
  const n = candidates.length;
  let lowest = Infinity;
  if (leastOutstanding) {
    for (let i = 0; i < n; i++) {
      const c = candidates[i]!;
      if (excluded !== null && excluded.includes(c)) continue;
      const load = c.inflight / (c.weight ?? 1);
      if (load < lowest) lowest = load;
    }
  }
  const advance = excluded === null;
  let best = -1;
  let bestScore = -Infinity;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const c = candidates[i]!;
    if (excluded !== null && excluded.includes(c)) continue;
    const w = c.weight ?? 1;
    if (leastOutstanding && c.inflight / w !== lowest) continue;
    const score = (c.swrr ?? 0) + w;
    if (advance) c.swrr = score;
    total += w;
    if (score > bestScore) {
      best = i;
      bestScore = score;
    }
  }
  if (advance && best >= 0) candidates[best]!.swrr = bestScore - total;
  return best;
}

/**
 * Pick from `candidates`. A first attempt advances the rotation; a retry
 * (`excluded` given) does not, so a target that refuses connections does not
 * shift the turn of the others.
 */
export function pick<T extends Candidate>(
  policy: PickPolicy,
  candidates: readonly T[],
  rotation: Rotation,
  excluded: readonly Candidate[] | null,
): T | undefined {
  const idx = pickIndex(policy, candidates, rotation.next, excluded);
  // Wrap well before 2^31 so the counter stays a small integer.
  if (excluded === null) rotation.next = (rotation.next + 1) & 0x3fffffff;
  return idx < 0 ? undefined : candidates[idx];
}
