// The live figures behind the charts: once a second, each service's cumulative
// per-release counters are sampled and the difference to the previous sample
// becomes one point per release (requests/s, 5xx share, p99, in-flight,
// WebSockets). The last few minutes are kept so a page opens with history.

import { windowFigures } from '../deploy/analysis.ts';
import type { ReleaseMetrics } from '../proxy/types.ts';

/** One release's figures over one interval. */
export interface ReleasePoint {
  rps: number;
  /** Share of the interval's requests the app answered with a 5xx (0–1); null without requests. */
  errorRate: number | null;
  /** Requests baton failed itself in the interval, per second (its own 502/504, cut responses): the zero-downtime contract says 0. */
  failed: number;
  /** Upper bound of the p99 latency bucket (ms); null without requests. */
  p99Ms: number | null;
  inflight: number;
  websockets: number;
}

/** One tick: the time (epoch s) and each release's point. */
export interface Tick {
  t: number;
  releases: Record<string, ReleasePoint>;
}

export interface LiveSource {
  services(): string[];
  metrics(service: string): ReleaseMetrics[];
}

export const HISTORY_SECONDS = 180;
const QUIET_MS = 60_000;
const SLOWEST_MS = 10_000;

export class LiveFigures {
  readonly #source: LiveSource;
  readonly #last = new Map<string, { at: number; byRelease: Map<string, ReleaseMetrics> }>();
  readonly #history = new Map<string, Tick[]>();
  /** When each service+release last had traffic, in-flight requests or WebSockets. */
  readonly #lastActive = new Map<string, number>();
  readonly #listeners = new Set<() => void>();
  #timer: NodeJS.Timeout | null = null;

  constructor(source: LiveSource) {
    this.#source = source;
  }

  start(everyMs = 1000): void {
    this.sample();
    this.#timer = setInterval(() => this.sample(), everyMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#listeners.clear();
  }

  /** Called after each sampling round (every second). */
  onSampled(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  history(service: string): Tick[] {
    return this.#history.get(service) ?? [];
  }

  /** The latest tick of a service (zeros before the first interval). */
  latest(service: string): Tick | null {
    const h = this.#history.get(service);
    return h?.[h.length - 1] ?? null;
  }

  /** Requests/s, 5xx share and p99 of a service over the last `seconds` ticks: all releases together, or one (a front service's target). */
  summary(service: string, seconds: number, release?: string): { rps: number; errorRate: number | null; failed: number; p99Ms: number | null } {
    const ticks = this.history(service).slice(-seconds);
    let requests = 0;
    let errors = 0;
    let failed = 0;
    let p99: number | null = null;
    for (const t of ticks) {
      for (const [r, p] of Object.entries(t.releases)) {
        if (release !== undefined && r !== release) continue;
        const n = p.rps;
        requests += n;
        failed += p.failed;
        if (p.errorRate !== null) errors += p.errorRate * n;
        if (p.p99Ms !== null && n > 0) p99 = Math.max(p99 ?? 0, p.p99Ms);
      }
    }
    const per = ticks.length || 1;
    return { rps: requests / per, errorRate: requests > 0 ? errors / requests : null, failed: failed / per, p99Ms: p99 };
  }

  sample(): void {
    const now = Date.now();
    const names = this.#source.services();
    for (const service of [...this.#history.keys()]) {
      if (!names.includes(service)) {
        this.#history.delete(service);
        this.#last.delete(service);
      }
    }
    for (const service of names) {
      const current = new Map(this.#source.metrics(service).map((m) => [m.release, m]));
      const prev = this.#last.get(service);
      this.#last.set(service, { at: now, byRelease: current });
      if (!prev) continue;
      const dt = Math.max(0.001, (now - prev.at) / 1000);
      const releases: Record<string, ReleasePoint> = {};
      for (const [release, m] of current) {
        const before = prev.byRelease.get(release);
        const w = windowFigures(before, m);
        const appErrors = m.appErrors - (before?.appErrors ?? 0);
        const failed = m.failed - (before?.failed ?? 0);
        const key = `${service}\0${release}`;
        if (w.requests > 0 || failed > 0 || m.inflight > 0 || m.websockets > 0) this.#lastActive.set(key, now);
        // A release quiet for a minute (an old one) is left off the charts.
        if (now - (this.#lastActive.get(key) ?? -Infinity) > QUIET_MS) continue;
        releases[release] = {
          rps: w.requests / dt,
          // The app's own 5xx; baton's failures are counted apart (failed).
          errorRate: w.requests > 0 ? appErrors / w.requests : null,
          failed: failed / dt,
          // Slower than the last finite bucket (10 s): shown as that bound.
          p99Ms: w.p99Ms === Infinity ? SLOWEST_MS : w.p99Ms,
          inflight: m.inflight,
          websockets: m.websockets,
        };
      }
      const tick: Tick = { t: Math.round(now / 100) / 10, releases };
      const h = this.#history.get(service) ?? [];
      h.push(tick);
      if (h.length > HISTORY_SECONDS) h.splice(0, h.length - HISTORY_SECONDS);
      this.#history.set(service, h);
    }
    for (const fn of this.#listeners) fn();
  }
}
