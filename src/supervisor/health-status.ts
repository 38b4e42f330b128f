// The health thresholds of one instance, as a pure state machine: fed check
// results, it says when the instance crosses from healthy to unhealthy and back.

export type HealthPhase = 'starting' | 'healthy' | 'unhealthy';

export interface HealthThresholds {
  healthyThreshold: number;
  unhealthyThreshold: number;
}

export class HealthStatus {
  #thresholds: HealthThresholds;
  #phase: HealthPhase = 'starting';
  #successes = 0;
  #failures = 0;

  constructor(thresholds: HealthThresholds) {
    this.#thresholds = thresholds;
  }

  /** New thresholds (a config reload): the counts so far are kept and judged by them from the next check. */
  setThresholds(thresholds: HealthThresholds): void {
    this.#thresholds = thresholds;
  }

  get phase(): HealthPhase {
    return this.#phase;
  }

  /**
   * Record one check. Returns the new phase when a threshold was crossed
   * ('healthy' or 'unhealthy'), else null. While starting, failures never make
   * the instance unhealthy: it has not been healthy yet (the start timeout is
   * the caller's business).
   */
  record(success: boolean): 'healthy' | 'unhealthy' | null {
    if (success) {
      this.#failures = 0;
      this.#successes++;
      if (this.#phase !== 'healthy' && this.#successes >= Math.max(1, this.#thresholds.healthyThreshold)) {
        this.#phase = 'healthy';
        return 'healthy';
      }
      return null;
    }
    this.#successes = 0;
    this.#failures++;
    if (this.#phase === 'healthy' && this.#failures >= Math.max(1, this.#thresholds.unhealthyThreshold)) {
      this.#phase = 'unhealthy';
      return 'unhealthy';
    }
    return null;
  }
}
