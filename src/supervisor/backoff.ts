// Restart delays for crashing instances: exponential, capped, and forgiven
// after a quiet period.

export interface BackoffOptions {
  /** First delay. Default 500 ms. */
  baseMs?: number;
  /** Largest delay. Default 30 s. */
  maxMs?: number;
  /** If no restart was needed for this long, start again from baseMs. Default 60 s. */
  resetAfterMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

export class Backoff {
  #baseMs: number;
  #maxMs: number;
  #resetAfterMs: number;
  #now: () => number;
  #attempt = 0;
  /** When the last restart happened (the moment the last delay ran out). */
  #restartedAt: number | null = null;

  constructor(opts: BackoffOptions = {}) {
    this.#baseMs = opts.baseMs ?? 500;
    this.#maxMs = opts.maxMs ?? 30_000;
    this.#resetAfterMs = opts.resetAfterMs ?? 60_000;
    this.#now = opts.now ?? Date.now;
  }

  /** The delay before the next restart: baseMs, 2×, 4×, … up to maxMs. */
  next(): number {
    const now = this.#now();
    // An instance that stayed up for resetAfterMs after its last restart is not crash-looping.
    if (this.#restartedAt !== null && now - this.#restartedAt >= this.#resetAfterMs) this.#attempt = 0;
    const delay = Math.min(this.#maxMs, this.#baseMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    this.#restartedAt = now + delay;
    return delay;
  }

  reset(): void {
    this.#attempt = 0;
    this.#restartedAt = null;
  }
}
