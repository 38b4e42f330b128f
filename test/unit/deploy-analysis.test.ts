import { test } from 'node:test';
import assert from 'node:assert/strict';
import { judge, p99FromHistogram, windowFigures, type WindowFigures } from '../../src/deploy/analysis.ts';
import type { AnalysisConfig } from '../../src/config/types.ts';
import type { ReleaseMetrics } from '../../src/proxy/types.ts';

const T: AnalysisConfig = { windowMs: 1000, minRequests: 100, maxErrorRate: 0.01, maxConnectionErrorRate: 0.01, maxP99Ratio: 1.5, p99FloorMs: 50, check: null };
const BUCKETS = [1, 5, 10, 50, 100, 500, Infinity];

function fig(over: Partial<WindowFigures>): WindowFigures {
  return { requests: 1000, errors5xx: 0, errorRate: 0, connectionErrors: 0, connectionErrorRate: 0, p99Ms: 10, ...over };
}

function metrics(requests: number, fivexx: number, conn: number, counts: number[]): ReleaseMetrics {
  return {
    service: 'web', release: 'r', requests, connectionErrors: conn, failed: 0, appErrors: fivexx, retries: 0, inflight: 0, websockets: 0, websocketsTotal: 0,
    status: { '1xx': 0, '2xx': requests - fivexx, '3xx': 0, '4xx': 0, '5xx': fivexx },
    latency: { bucketsMs: BUCKETS, counts, sumMs: 0 },
  };
}

test('p99 is the upper bound of the bucket that holds the 99th percentile', () => {
  assert.equal(p99FromHistogram(BUCKETS, [0, 0, 0, 0, 0, 0, 0]), null);
  assert.equal(p99FromHistogram(BUCKETS, [50, 99, 100, 100, 100, 100, 100]), 5);
  assert.equal(p99FromHistogram(BUCKETS, [50, 98, 98, 98, 98, 98, 100]), Infinity);
});

test('window figures are the difference of two cumulative samples', () => {
  const before = metrics(100, 1, 0, [10, 50, 100, 100, 100, 100, 100]);
  const after = metrics(1100, 51, 2, [10, 50, 100, 1090, 1100, 1100, 1100]);
  const w = windowFigures(before, after);
  assert.deepEqual(w, { requests: 1000, errors5xx: 50, errorRate: 0.05, connectionErrors: 2, connectionErrorRate: 0.002, p99Ms: 50 });
  assert.equal(windowFigures(undefined, undefined).requests, 0);
});

test('verdicts: too few requests, a 5xx canary, slow canary, connection errors, healthy canary', () => {
  assert.equal(judge(fig({ requests: 99 }), fig({}), T).result, 'inconclusive');
  const bad = judge(fig({ errors5xx: 50, errorRate: 0.05 }), fig({}), T);
  assert.equal(bad.result, 'fail');
  assert.match(bad.reasons[0]!, /5xx rate 5\.00% \(50\/1000\) vs stable 0\.00%; limit 1\.00%/);
  // The same 5xx rate in both releases is the app's, not the canary's.
  assert.equal(judge(fig({ errors5xx: 50, errorRate: 0.05 }), fig({ errorRate: 0.05 }), T).result, 'pass');
  assert.equal(judge(fig({ p99Ms: 500 }), fig({ p99Ms: 100 }), T).result, 'fail');
  assert.equal(judge(fig({ p99Ms: 50 }), fig({ p99Ms: 5 }), T).result, 'pass', 'below the floor, latency is not judged');
  assert.equal(judge(fig({ connectionErrors: 20, connectionErrorRate: 0.02 }), fig({}), T).result, 'fail');
  const ok = judge(fig({}), fig({}), T);
  assert.equal(ok.result, 'pass');
  assert.equal(ok.reasons.length, 3);
});
