// The sum of proxy workers' reports (src/daemon/worker-protocol.ts): what
// status, /metrics and the canary analysis read with `proxy.workers` > 1.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { emptyReport, releaseTotals, sumReports, type WorkerReport } from '../../src/daemon/worker-protocol.ts';
import { ReleaseStats } from '../../src/proxy/metrics.ts';
import { LATENCY_BUCKETS_MS, Proxy, type ProxySpec } from '../../src/proxy/index.ts';
import { WorkerProxy } from '../../src/daemon/workers.ts';
import { createLogger } from '../../src/core/log.ts';
import { defaultService } from '../../src/config/index.ts';

function report(requests: number, inflight: number, heldNow: number, latencyCounts: number[]): WorkerReport {
  return {
    services: { web: { requests, failed: 1, appErrors: 0, retries: 2, websockets: 0 } },
    routing: { web: { stable: requests, canary: 0, overrides: 0, fallbacks: 0, cookiesSet: 0, maintenance: 0, held: heldNow, released: 0, expired: 0, overflowed: 0, abandoned: 0, heldNow, betaLinksAccepted: 0, betaLinksRefused: 0, queued: 5, shed: 1, queueTimeouts: 0, queuedNow: 2 } },
    releases: [
      {
        service: 'web',
        release: 'v1',
        requests,
        status: { '1xx': 0, '2xx': requests, '3xx': 0, '4xx': 0, '5xx': 0 },
        connectionErrors: 0,
        failed: 1,
        appErrors: 0,
        retries: 2,
        inflight,
        websockets: 1,
        websocketsTotal: 3,
        latency: { bucketsMs: LATENCY_BUCKETS_MS, counts: latencyCounts, sumMs: requests * 2 },
      },
    ],
    targets: [{ id: 'web-1', service: 'web', release: 'v1', port: 4000, inService: true, inflight, websockets: 1, requests }],
    rss: 50_000_000,
    accessLogDropped: 3,
  };
}

const counts = (n: number): number[] => LATENCY_BUCKETS_MS.map((_, i) => Math.min(n, i * 10));

test('live workers: counters, routing, per-release figures (histogram bucket by bucket) and target gauges add up', () => {
  const s = sumReports([report(100, 3, 2, counts(100)), report(50, 1, 4, counts(50))]);
  assert.deepEqual(s.services['web'], { requests: 150, failed: 2, appErrors: 0, retries: 4, websockets: 0 });
  assert.equal(s.routing['web']!.stable, 150);
  assert.equal(s.routing['web']!.heldNow, 6);
  assert.equal(s.routing['web']!.queuedNow, 4);
  assert.equal(s.routing['web']!.shed, 2);
  const r = s.releases[0]!;
  assert.equal(s.releases.length, 1);
  assert.equal(r.requests, 150);
  assert.equal(r.status['2xx'], 150);
  assert.equal(r.inflight, 4);
  assert.equal(r.websocketsTotal, 6);
  assert.deepEqual(r.latency.counts, counts(100).map((c, i) => c + counts(50)[i]!));
  assert.equal(r.latency.sumMs, 300);
  assert.deepEqual(s.targets, [{ id: 'web-1', service: 'web', release: 'v1', port: 4000, inService: true, inflight: 4, websockets: 2, requests: 150 }]);
  assert.equal(s.rss, 100_000_000);
  assert.equal(s.accessLogDropped, 6);
});

test('a dead worker leaves its totals, not its gauges; the inputs are not changed', () => {
  const dead = report(100, 3, 2, counts(100));
  const before = JSON.stringify(dead);
  const retired = sumReports([emptyReport(), dead], { gauges: false });
  assert.equal(JSON.stringify(dead), before);
  assert.equal(retired.services['web']!.requests, 100);
  assert.equal(retired.routing['web']!.heldNow, 0);
  assert.equal(retired.routing['web']!.held, 2);
  assert.equal(retired.routing['web']!.queuedNow, 0);
  assert.equal(retired.routing['web']!.queued, 5);
  assert.equal(retired.releases[0]!.inflight, 0);
  assert.equal(retired.releases[0]!.websockets, 0);
  assert.equal(retired.releases[0]!.requests, 100);
  assert.equal(retired.targets[0]!.inflight, 0);
  assert.equal(retired.targets[0]!.requests, 100);
  assert.equal(retired.rss, 0);
  // Dropped access log lines are a total: they stay counted.
  assert.equal(retired.accessLogDropped, 3);
  // Then summed with a live replacement: totals keep counting from the first start.
  const s = sumReports([retired, report(7, 1, 0, counts(7))]);
  assert.equal(s.services['web']!.requests, 107);
  assert.equal(s.releases[0]!.inflight, 1);
});

test('the workers\' /metrics has every family the in-process proxy has, and the per-worker ones', () => {
  const logger = createLogger('error');
  const opts = { logger, clientIdleTimeoutMs: 1000, headersTimeoutMs: 1000 };
  const spec: ProxySpec = { services: [{ name: 'web', hosts: [], isDefault: true, balance: 'round_robin', upstream: defaultService('web', 'x').upstream, targets: [{ id: 'web-1', release: 'v1', host: '127.0.0.1', port: 1 }] }] };
  const one = new Proxy(opts);
  // Constructed only: no worker is started until listen().
  const many = new WorkerProxy({ ...opts, workers: 2, dbFile: '/nonexistent/baton.db', logLevel: 'error' });
  one.apply(spec);
  many.apply(spec);
  const families = (text: string): string[] => [...text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]!);
  const mine = families(many.prometheusText());
  for (const f of families(one.prometheusText())) assert.ok(mine.includes(f), `${f} is missing with proxy workers`);
  for (const f of ['baton_proxy_worker_requests_total', 'baton_proxy_worker_restarts_total', 'baton_proxy_worker_resident_memory_bytes']) assert.ok(mine.includes(f), f);
});

test('a worker\'s release figures go to a successor daemon in the form ReleaseStats.totals() writes', () => {
  const st = new ReleaseStats('web', 'v1');
  st.appResponse(200, 3);
  st.appResponse(503, 40);
  st.batonAnswer(502, 0.5);
  st.retries = 2;
  st.connectionErrors = 1;
  st.websocketsTotal = 4;
  st.inflight = 7;
  assert.deepEqual(releaseTotals(st.snapshot()), { service: 'web', release: 'v1', ...st.totals() });
});
