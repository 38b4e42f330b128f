// Property-based tests (fast-check) with a fixed seed, so a run is the same run
// every time and a failure reproduces: the seed is printed by each test, and
// fast-check's failure message names it with the path of the counterexample.
// BATON_PROP_SEED=<n> explores other cases; BATON_PROP_RUNS=<factor> multiplies
// the number of runs (both for local exploration, not for CI).

import type { TestContext } from 'node:test';
import fc from 'fast-check';
import type { ServiceShared } from '../../src/proxy/snapshot.ts';
import { PauseQueue } from '../../src/proxy/pause-queue.ts';
import { Admission } from '../../src/proxy/admission.ts';
import { ReleaseStats } from '../../src/proxy/metrics.ts';

const DEFAULT_SEED = 1130;

export const PROP_SEED = Number(process.env['BATON_PROP_SEED'] ?? DEFAULT_SEED);
const RUN_FACTOR = Number(process.env['BATON_PROP_RUNS'] ?? 1);

/**
 * Check `property` for `numRuns` cases from the fixed seed; the seed and count go
 * to the test's diagnostics. `shrink: false` reports the first failing case as it
 * is (for cases of thousands of values, whose shrinking would take minutes).
 */
export function checkProperty<T>(t: TestContext, property: fc.IProperty<T>, numRuns: number, opts: { shrink?: boolean } = {}): void {
  const runs = Math.max(1, Math.round(numRuns * RUN_FACTOR));
  t.diagnostic(`fast-check seed ${PROP_SEED}, ${runs} runs (replay: BATON_PROP_SEED=${PROP_SEED})`);
  fc.assert(property, { seed: PROP_SEED, numRuns: runs, endOnFailure: opts.shrink === false });
}

/** One of `plain`, with up to `maxOdd` characters of `odd` inserted anywhere (the forms parsers disagree on or refuse, among plain ones). */
export function withOddBytes(plain: string[], odd: fc.Arbitrary<string>, maxOdd: number): fc.Arbitrary<string> {
  return fc.tuple(fc.constantFrom(...plain), fc.array(fc.tuple(fc.nat(40), odd), { maxLength: maxOdd })).map(([str, inserts]) => {
    let out = str;
    for (const [at, c] of inserts) {
      const i = at % (out.length + 1);
      out = out.slice(0, i) + c + out.slice(i);
    }
    return out;
  });
}

/** A string of latin1 characters (what Node's HTTP parser hands over as header text). */
export function latin1(constraints: { minLength?: number; maxLength?: number } = {}): fc.Arbitrary<string> {
  return fc.string({ ...constraints, unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)) });
}


/** A service's state shared across snapshots, fresh (for snapshots built without a Proxy). */
export function freshShared(name: string): ServiceShared {
  return {
    counters: { requests: 0, failed: 0, appErrors: 0, retries: 0, websockets: 0 },
    routing: {
      stable: 0, canary: 0, overrides: 0, fallbacks: 0, cookiesSet: 0, maintenance: 0, held: 0,
      released: 0, expired: 0, overflowed: 0, abandoned: 0, heldNow: 0, betaLinksAccepted: 0, betaLinksRefused: 0,
      queued: 0, shed: 0, queueTimeouts: 0, queuedNow: 0,
    },
    rotation: { next: 0 },
    canaryRotation: { next: 0 },
    queue: new PauseQueue(),
    admission: new Admission(),
    noRelease: new ReleaseStats(name, '-'),
  };
}

/** checkProperty for an asynchronous property (each run may do I/O: keep numRuns small). */
export async function checkAsyncProperty<T>(t: TestContext, property: fc.IAsyncProperty<T>, numRuns: number): Promise<void> {
  const runs = Math.max(1, Math.round(numRuns * RUN_FACTOR));
  t.diagnostic(`fast-check seed ${PROP_SEED}, ${runs} runs (replay: BATON_PROP_SEED=${PROP_SEED})`);
  await fc.assert(property, { seed: PROP_SEED, numRuns: runs });
}
