// A canary rollout in progress: its plan, where it is, and the operator's
// signals (promote, promote --full, abort) that reach the step being waited on.

import type { CanaryStep } from '../config/types.ts';
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

  constructor(group: ReleaseGroup, steps: readonly CanaryStep[]) {
    this.group = group;
    this.steps = steps;
  }

  /** Deliver an operator's signal; kept until the rollout next waits if it is not waiting now. */
  send(signal: CanarySignal, reason?: string): void {
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
