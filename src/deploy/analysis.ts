// Canary analysis: compare the canary with the stable release over a window,
// from the proxy's own per-release figures. Pure: the deployer samples the
// cumulative metrics at the start and end of the window and asks for a verdict.

import type { AnalysisConfig } from '../config/types.ts';
import type { ReleaseMetrics } from '../proxy/types.ts';

export interface WindowFigures {
  requests: number;
  errors5xx: number;
  errorRate: number; // share of responses that were 5xx
  connectionErrors: number;
  connectionErrorRate: number;
  /** Upper bound of the latency bucket holding the 99th percentile; null without requests. */
  p99Ms: number | null;
}

export interface Verdict {
  result: 'pass' | 'fail' | 'inconclusive';
  /** Why, one line per threshold that decided (failed thresholds first). */
  reasons: string[];
  canary: WindowFigures;
  stable: WindowFigures;
}

/** The 99th percentile from a cumulative histogram (counts[i] = requests <= bucketsMs[i]). */
export function p99FromHistogram(bucketsMs: readonly number[], counts: readonly number[]): number | null {
  const total = counts[counts.length - 1] ?? 0;
  if (total <= 0) return null;
  const want = Math.ceil(total * 0.99);
  for (let i = 0; i < counts.length; i++) if ((counts[i] ?? 0) >= want) return bucketsMs[i] ?? Infinity;
  return Infinity;
}

/** Figures of one release over a window: the difference of two cumulative samples. */
export function windowFigures(before: ReleaseMetrics | undefined, after: ReleaseMetrics | undefined): WindowFigures {
  if (!after) return { requests: 0, errors5xx: 0, errorRate: 0, connectionErrors: 0, connectionErrorRate: 0, p99Ms: null };
  const requests = after.requests - (before?.requests ?? 0);
  const errors5xx = after.status['5xx'] - (before?.status['5xx'] ?? 0);
  const connectionErrors = after.connectionErrors - (before?.connectionErrors ?? 0);
  const counts = after.latency.counts.map((c, i) => c - (before?.latency.counts[i] ?? 0));
  return {
    requests,
    errors5xx,
    errorRate: requests > 0 ? errors5xx / requests : 0,
    connectionErrors,
    connectionErrorRate: requests > 0 ? connectionErrors / requests : 0,
    p99Ms: p99FromHistogram(after.latency.bucketsMs, counts),
  };
}

const pct = (x: number): string => `${(x * 100).toFixed(2)}%`;
const ms = (x: number | null): string => (x === null ? '-' : x === Infinity ? '>max' : `${x}ms`);

export function judge(canary: WindowFigures, stable: WindowFigures, t: AnalysisConfig): Verdict {
  const failed: string[] = [];
  const passed: string[] = [];
  if (canary.requests < t.minRequests) {
    return {
      result: 'inconclusive',
      reasons: [`the canary served ${canary.requests} request(s), fewer than min_requests ${t.minRequests}: no verdict`],
      canary,
      stable,
    };
  }
  const errorLimit = stable.errorRate + t.maxErrorRate;
  (canary.errorRate > errorLimit ? failed : passed).push(
    `5xx rate ${pct(canary.errorRate)} (${canary.errors5xx}/${canary.requests}) vs stable ${pct(stable.errorRate)}; limit ${pct(errorLimit)}`,
  );
  (canary.connectionErrorRate > t.maxConnectionErrorRate ? failed : passed).push(
    `connection errors ${pct(canary.connectionErrorRate)} (${canary.connectionErrors}); limit ${pct(t.maxConnectionErrorRate)}`,
  );
  if (canary.p99Ms !== null) {
    const limit = Math.max((stable.p99Ms ?? 0) * t.maxP99Ratio, t.p99FloorMs);
    (canary.p99Ms > limit ? failed : passed).push(`p99 ${ms(canary.p99Ms)} vs stable ${ms(stable.p99Ms)}; limit ${ms(limit)}`);
  }
  return { result: failed.length ? 'fail' : 'pass', reasons: [...failed, ...passed], canary, stable };
}
