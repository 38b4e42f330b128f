// Runs health checks for one instance on a schedule: quickly while it starts,
// then every intervalMs; one check at a time; timers never hold the process up.

import type { HealthConfig } from '../config/types.ts';
import { probeHttp } from './health-probe.ts';
import { HealthStatus, type HealthPhase } from './health-status.ts';

/** While starting, re-check at least this often so a fast app gets traffic quickly (a probe of a port nobody listens on yet is a refused connect: cheap). */
const STARTING_RETRY_MS = 100;

export interface HealthMonitorEvents {
  /** A threshold was crossed. */
  changed(healthy: boolean): void;
}

export class HealthMonitor {
  #port: number;
  #cfg: HealthConfig;
  #events: HealthMonitorEvents;
  #status: HealthStatus;
  #timer: NodeJS.Timeout | null = null;
  #inflight: AbortController | null = null;
  #running = false;
  #lastError: string | null = null;

  constructor(port: number, cfg: HealthConfig, events: HealthMonitorEvents) {
    this.#port = port;
    this.#cfg = cfg;
    this.#events = events;
    this.#status = new HealthStatus(cfg);
  }

  get phase(): HealthPhase {
    return this.#status.phase;
  }

  /** The last failure, cleared by a success. */
  get lastError(): string | null {
    return this.#lastError;
  }

  /** First check right away. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#schedule(0);
  }

  /**
   * New settings (a config reload): path, timeout and thresholds apply from the
   * next check, which is rescheduled to the new interval.
   */
  reconfigure(cfg: HealthConfig): void {
    this.#cfg = cfg;
    this.#status.setThresholds(cfg);
    // A check waiting on the old interval (maybe long) is moved; one in flight finishes and schedules by the new one.
    if (this.#running && this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#schedule(this.#status.phase === 'starting' ? Math.min(cfg.intervalMs, STARTING_RETRY_MS) : cfg.intervalMs);
    }
  }

  /** No more checks; an in-flight one is aborted. */
  stop(): void {
    this.#running = false;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#inflight?.abort();
    this.#inflight = null;
  }

  #schedule(delayMs: number): void {
    this.#timer = setTimeout(() => void this.#check(), delayMs);
    this.#timer.unref();
  }

  async #check(): Promise<void> {
    this.#timer = null;
    const ac = new AbortController();
    this.#inflight = ac;
    const error = await probeHttp(this.#port, this.#cfg.path, this.#cfg.timeoutMs, ac.signal);
    if (!this.#running || ac.signal.aborted) return;
    this.#inflight = null;
    this.#lastError = error;
    const crossed = this.#status.record(error === null);
    const phase = this.#status.phase;
    const next = phase === 'starting' ? Math.min(this.#cfg.intervalMs, STARTING_RETRY_MS) : this.#cfg.intervalMs;
    this.#schedule(next);
    if (crossed !== null) this.#events.changed(crossed === 'healthy');
  }
}
