import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LATENCY_BUCKETS_MS, ReleaseStats, renderPrometheus } from '../../src/proxy/metrics.ts';
import { parsePrometheus, promValue } from '../fixtures/proxy-harness.ts';

test('ReleaseStats: status classes, cumulative histogram with +Inf = all, sum', () => {
  const s = new ReleaseStats('web', 'r1');
  const latencies = [0.2, 1, 1.5, 7, 10, 99, 5000, 20_000, Number.NaN];
  const statuses = [101, 200, 204, 301, 404, 499, 500, 503, 502];
  latencies.forEach((ms, i) => s.respond(statuses[i]!, ms));
  s.abandoned();
  const m = s.snapshot();
  assert.equal(m.requests, 10);
  assert.deepEqual(m.status, { '1xx': 1, '2xx': 2, '3xx': 1, '4xx': 2, '5xx': 3 });
  assert.deepEqual(m.latency.bucketsMs, LATENCY_BUCKETS_MS);
  assert.equal(LATENCY_BUCKETS_MS.at(-1), Infinity);
  const at = (le: number): number => m.latency.counts[LATENCY_BUCKETS_MS.indexOf(le)]!;
  assert.equal(at(1), 2); // 0.2, 1
  assert.equal(at(2), 3);
  assert.equal(at(10), 5);
  assert.equal(at(100), 6);
  assert.equal(at(5000), 7);
  assert.equal(at(10_000), 7);
  assert.equal(at(Infinity), 9); // every response head, NaN included
  for (let i = 1; i < m.latency.counts.length; i++) assert.ok(m.latency.counts[i]! >= m.latency.counts[i - 1]!);
  // The copy does not move with the live object.
  s.respond(200, 1);
  assert.equal(m.requests, 10);
});

test('renderPrometheus: families, labels escaped, histogram buckets in seconds', () => {
  const a = new ReleaseStats('web', 'r"1\\');
  a.respond(200, 3);
  a.respond(503, 40);
  a.retries = 2;
  a.connectionErrors = 1;
  a.inflight = 4;
  a.websockets = 1;
  const text = renderPrometheus([a.snapshot(), new ReleaseStats('web', '-').snapshot()], [{ service: 'web', held: 3 }]);
  const { samples, types } = parsePrometheus(text);
  assert.equal(types.get('baton_request_duration_seconds'), 'histogram');
  assert.equal(types.get('baton_inflight_requests'), 'gauge');
  assert.equal(types.get('baton_requests_total'), 'counter');
  const r = { service: 'web', release: 'r"1\\' };
  assert.equal(promValue(samples, 'baton_requests_total', r), 2);
  assert.equal(promValue(samples, 'baton_responses_total', { ...r, class: '2xx' }), 1);
  assert.equal(promValue(samples, 'baton_responses_total', { ...r, class: '5xx' }), 1);
  assert.equal(promValue(samples, 'baton_request_duration_seconds_bucket', { ...r, le: '0.005' }), 1);
  assert.equal(promValue(samples, 'baton_request_duration_seconds_bucket', { ...r, le: '0.05' }), 2);
  assert.equal(promValue(samples, 'baton_request_duration_seconds_bucket', { ...r, le: '+Inf' }), 2);
  assert.equal(promValue(samples, 'baton_request_duration_seconds_count', r), 2);
  assert.equal(promValue(samples, 'baton_request_duration_seconds_sum', r), 0.043);
  assert.equal(promValue(samples, 'baton_retries_total', r), 2);
  assert.equal(promValue(samples, 'baton_upstream_connection_errors_total', r), 1);
  assert.equal(promValue(samples, 'baton_inflight_requests', r), 4);
  assert.equal(promValue(samples, 'baton_websockets_open', r), 1);
  assert.equal(promValue(samples, 'baton_requests_total', { service: 'web', release: '-' }), 0);
  assert.equal(promValue(samples, 'baton_held_requests', { service: 'web' }), 3);
  assert.match(text, /release="r\\"1\\\\"/);
});
