// A canary rollout in progress: its plan, where it is, and the operator's
// signals (promote, promote --full, abort) that reach the step being waited on.

import type { CanaryStep } from '../config/types.ts';
import { parseDuration } from '../config/duration.ts';
import { BatonError } from '../core/errors.ts';
import { formatDuration } from '../core/time.ts';
import type { ReleaseGroup } from './release-group.ts';

export type CanarySignal = 'promote' | 'promote_full' | 'abort';

/** What the rollout is doing now, for `baton status`. */
export type CanaryWaiting = 'pause' | 'promote' | 'analysis' | null;

export class CanaryRun {
  readonly group: ReleaseGroup;
  readonly steps: readonly CanaryStep[];
  /** Percent of visitors sent to the canary now. */
  weight = 0;
  /** Index of the step being run. */
  step = 0;
  waiting: CanaryWaiting = null;
  /** The abort's reason, once aborted. */
  abortReason: string | null = null;
  #pending: CanarySignal | null = null;
  #wake: ((s: CanarySignal) => void) | null = null;
  /** Operators waiting for their signal to take effect (see send()). */
  #acks: (() => void)[] = [];

  constructor(group: ReleaseGroup, steps: readonly CanaryStep[]) {
    this.group = group;
    this.steps = steps;
  }

  /**
   * Deliver an operator's signal; kept until the rollout next waits if it is
   * not waiting now. Resolves once it took effect: the next weight is routed,
   * the rollout waits at its next step, or the rollout ended (switched or
   * rolled back).
   */
  send(signal: CanarySignal, reason?: string): Promise<void> {
    const live = new Promise<void>((resolve) => this.#acks.push(resolve));
    this.#deliver(signal, reason);
    return live;
  }

  /** The rollout did what the signals asked (routed a weight, waits, or ended): tell their senders. */
  applied(): void {
    const acks = this.#acks;
    this.#acks = [];
    for (const a of acks) a();
  }

  #deliver(signal: CanarySignal, reason?: string): void {
    if (signal === 'abort') this.abortReason = reason ?? 'aborted by the operator';
    // An abort wins over a promote that has not been consumed yet.
    if (this.#pending !== 'abort') this.#pending = signal;
    const wake = this.#wake;
    if (wake) {
      this.#wake = null;
      this.#pending = null;
      wake(signal);
    }
  }

  /** Wait up to `ms` (Infinity: until a signal) in the given state. */
  wait(ms: number, waiting: Exclude<CanaryWaiting, null>): Promise<CanarySignal | 'timeout'> {
    const pending = this.#pending;
    if (pending) {
      this.#pending = null;
      return Promise.resolve(pending);
    }
    this.waiting = waiting;
    this.applied();
    return new Promise((resolve) => {
      const t = Number.isFinite(ms)
        ? setTimeout(() => {
            this.#wake = null;
            this.waiting = null;
            resolve('timeout');
          }, ms)
        : null;
      this.#wake = (s) => {
        if (t) clearTimeout(t);
        this.waiting = null;
        resolve(s);
      };
    });
  }

  /** A signal that arrived while the rollout was busy (not waiting), taken now. */
  takePending(): CanarySignal | null {
    const p = this.#pending;
    this.#pending = null;
    return p;
  }
}

export function describeStep(s: CanaryStep): string {
  switch (s.kind) {
    case 'weight':
      return `${s.weight}%`;
    case 'pause':
      return `pause ${formatDuration(s.ms)}`;
    case 'pause_until_promoted':
      return 'pause until promoted';
    case 'analysis':
      return `analysis ${formatDuration(s.windowMs)}`;
  }
}

/**
 * A deploy's own canary plan (`baton deploy --steps 10,50`), read from text.
 * Items, comma-separated: a percent (`10`), `analysis` or `analysis:2m`,
 * `pause:5m`, `promote` (wait for `baton promote`). A list of percents only is
 * the default plan's shape with these weights: each weight is followed by an
 * analysis over the configured window. The rollout always ends at 100%.
 */
export function parseSteps(text: string, analysisWindowMs: number): CanaryStep[] {
  const bad = (why: string): never => {
    throw new BatonError('BAD_REQUEST', `--steps "${text}": ${why}; e.g. --steps 10,50 or --steps 5,pause:10m,50,promote`);
  };
  const items = text.split(',').map((x) => x.trim());
  if (text.trim() === '' || items.some((x) => x === '')) bad('an empty item');
  const steps: CanaryStep[] = [];
  let last = 0;
  for (const item of items) {
    if (/^\d+(\.\d+)?%?$/.test(item)) {
      const weight = Number(item.replace('%', ''));
      if (!Number.isInteger(weight) || weight < 1 || weight > 100) bad(`"${item}" is not a whole percent from 1 to 100`);
      if (weight <= last) bad(`weights must grow: ${weight} after ${last}`);
      last = weight;
      steps.push({ kind: 'weight', weight });
    } else if (item === 'promote') {
      steps.push({ kind: 'pause_until_promoted' });
    } else if (item === 'analysis' || item.startsWith('analysis:') || item.startsWith('pause:')) {
      const [kind, dur] = item.split(':', 2) as [string, string | undefined];
      const ms = dur === undefined ? analysisWindowMs : parseDuration(dur);
      if (ms === undefined || ms <= 0) bad(`"${dur}" in "${item}" is not a duration (like 30s or 5m)`);
      steps.push(kind === 'pause' ? { kind: 'pause', ms: ms! } : { kind: 'analysis', windowMs: ms! });
    } else {
      bad(`"${item}" is not a percent, analysis[:DURATION], pause:DURATION or promote`);
    }
  }
  if (last === 0) bad('no weight given');
  const onlyWeights = steps.every((st) => st.kind === 'weight');
  const plan: CanaryStep[] = onlyWeights ? steps.flatMap((st) => (st.kind === 'weight' && st.weight < 100 ? [st, { kind: 'analysis' as const, windowMs: analysisWindowMs }] : [st])) : steps;
  if (last < 100) plan.push({ kind: 'weight', weight: 100 });
  return plan;
}
