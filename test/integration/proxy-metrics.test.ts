import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CanarySpec, UpstreamTarget } from '../../src/proxy/index.ts';
import { LATENCY_BUCKETS_MS } from '../../src/proxy/index.ts';
import { parsePrometheus, promValue, request, service, startProxy, startServer, target, waitUntil, withTimeout } from '../fixtures/proxy-harness.ts';

test('per-release metrics and /metrics: requests, status classes, latency histogram, in-flight, attributed to the right release', async (t) => {
  let releaseHeld: (() => void) | null = null;
  const handler = (name: string) => (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    req.resume();
    const url = new URL(req.url!, 'http://x');
    if (url.pathname === '/hold') {
      releaseHeld = () => res.end(name);
      return;
    }
    if (url.pathname === '/slow') {
      setTimeout(() => res.end(name), 120);
      return;
    }
    const status = Number(url.pathname.slice(3)) || 200;
    res.writeHead(status, status === 302 ? { location: '/' } : {});
    res.end(name);
  };
  const s1 = await startServer(t, handler('stable'));
  const s2 = await startServer(t, handler('canary'));
  const stable: UpstreamTarget = target('s1', s1.port, 'r1');
  const canaryT: UpstreamTarget = target('c1', s2.port, 'r2');
  const canary: CanarySpec = {
    release: 'r2',
    targets: [canaryT],
    weight: 0,
    sticky: { cookie: 'bb', secret: 'x', key: { kind: 'random' } },
    overrides: { header: { name: 'X-Canary', value: '1' }, betaCookie: null, networks: [] },
  };
  const { proxy, port } = await startProxy(t);
  const m = await proxy.listenMetrics('127.0.0.1', 0);
  assert.equal(m.host, '127.0.0.1');
  proxy.apply({ services: [service('web', [stable], { isDefault: true, canary })] });

  const sent = { r1: { '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 }, r2: { '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 } };
  const plan: [string, keyof typeof sent, keyof (typeof sent)['r1'], number][] = [
    ['/s/200', 'r1', '2xx', 5],
    ['/s/404', 'r1', '4xx', 3],
    ['/s/500', 'r1', '5xx', 2],
    ['/s/302', 'r1', '3xx', 1],
    ['/slow', 'r1', '2xx', 1],
    ['/s/200', 'r2', '2xx', 4],
    ['/s/503', 'r2', '5xx', 1],
  ];
  for (const [path, release, cls, n] of plan) {
    for (let i = 0; i < n; i++) {
      const r = await request(port, { path, headers: release === 'r2' ? { 'x-canary': '1' } : {} });
      assert.equal(r.body, release === 'r2' ? 'canary' : 'stable');
      sent[release][cls]++;
    }
  }

  // One request in flight on r2 shows in the gauge.
  const held = request(port, { path: '/hold', headers: { 'x-canary': '1' } });
  await waitUntil(() => releaseHeld !== null, 5000, 'the held request to reach the app');
  assert.equal(proxy.releaseMetrics('web').find((x) => x.release === 'r2')!.inflight, 1);
  const scrape = async (): Promise<string> => {
    const r = await request(m.port, { path: '/metrics' });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type']!, /^text\/plain; version=0\.0\.4/);
    return r.body;
  };
  let prom = parsePrometheus(await scrape());
  assert.equal(promValue(prom.samples, 'baton_inflight_requests', { service: 'web', release: 'r2' }), 1);
  releaseHeld!();
  assert.equal((await held).status, 200);
  sent.r2['2xx']++;

  // No instance at all: 503s under release "-".
  proxy.apply({ services: [service('web', [], { isDefault: true })] });
  for (let i = 0; i < 2; i++) assert.equal((await request(port)).status, 503);

  prom = parsePrometheus(await scrape());
  const metrics = proxy.releaseMetrics('web');
  assert.deepEqual(metrics.map((x) => x.release), ['-', 'r1', 'r2']);
  for (const release of ['r1', 'r2'] as const) {
    const lbl = { service: 'web', release };
    const total = Object.values(sent[release]).reduce((a, b) => a + b, 0);
    const rm = metrics.find((x) => x.release === release)!;
    assert.equal(rm.requests, total, release);
    assert.equal(promValue(prom.samples, 'baton_requests_total', lbl), total);
    for (const cls of ['2xx', '3xx', '4xx', '5xx'] as const) {
      assert.equal(rm.status[cls], sent[release][cls], `${release} ${cls}`);
      assert.equal(promValue(prom.samples, 'baton_responses_total', { ...lbl, class: cls }), sent[release][cls]);
    }
    assert.equal(promValue(prom.samples, 'baton_responses_total', { ...lbl, class: '1xx' }), 0);
    assert.equal(promValue(prom.samples, 'baton_request_duration_seconds_count', lbl), total);
    assert.equal(rm.latency.counts.at(-1), total);
    let prev = 0;
    for (const [i, b] of LATENCY_BUCKETS_MS.entries()) {
      const le = b === Infinity ? '+Inf' : String(b / 1000);
      const v = promValue(prom.samples, 'baton_request_duration_seconds_bucket', { ...lbl, le })!;
      assert.equal(v, rm.latency.counts[i]);
      assert.ok(v >= prev, 'buckets are cumulative');
      prev = v;
    }
    assert.equal(promValue(prom.samples, 'baton_inflight_requests', lbl), 0);
    assert.equal(promValue(prom.samples, 'baton_retries_total', lbl), 0);
    assert.equal(promValue(prom.samples, 'baton_upstream_connection_errors_total', lbl), 0);
    assert.equal(promValue(prom.samples, 'baton_websockets_open', lbl), 0);
    // Every 5xx here came from the app: app errors, not baton's failures.
    assert.equal(rm.appErrors, sent[release]['5xx'], `${release} app errors`);
    assert.equal(rm.failed, 0);
    assert.equal(promValue(prom.samples, 'baton_app_errors_total', lbl), sent[release]['5xx']);
    assert.equal(promValue(prom.samples, 'baton_failed_requests_total', lbl), 0);
  }
  // The 120 ms request is above the 100 ms bound and within 250 ms... or slower on a busy machine, never faster.
  const r1 = metrics.find((x) => x.release === 'r1')!;
  assert.ok(r1.latency.counts[LATENCY_BUCKETS_MS.indexOf(100)]! <= 11);
  assert.ok(r1.latency.sumMs >= 120);
  assert.ok(Math.abs(promValue(prom.samples, 'baton_request_duration_seconds_sum', { service: 'web', release: 'r1' })! - r1.latency.sumMs / 1000) < 1e-6);
  const none = metrics.find((x) => x.release === '-')!;
  assert.deepEqual([none.requests, none.status['5xx'], none.failed, none.appErrors], [2, 2, 2, 0]);
  assert.equal(promValue(prom.samples, 'baton_failed_requests_total', { service: 'web', release: '-' }), 2);
  assert.equal(promValue(prom.samples, 'baton_responses_total', { service: 'web', release: '-', class: '5xx' }), 2);
  assert.equal(promValue(prom.samples, 'baton_held_requests', { service: 'web' }), 0);
  assert.equal(prom.types.get('process_resident_memory_bytes'), 'gauge');
  assert.ok(promValue(prom.samples, 'process_resident_memory_bytes', {})! > 10 * 2 ** 20, 'the process reports its own resident memory');
  // releaseMetrics() of all services = of this one here; an unknown service has none.
  assert.deepEqual(proxy.releaseMetrics(), metrics);
  assert.deepEqual(proxy.releaseMetrics('nope'), []);
  // Copies: a later request does not change what was returned.
  assert.equal(metrics[0]!.requests, 2);

  assert.equal((await request(m.port, { path: '/other' })).status, 404);
  assert.equal((await request(m.port, { path: '/metrics', method: 'POST' })).status, 404);
  await withTimeout(proxy.close(), 8000, 'close()');
  await assert.rejects(request(m.port, { path: '/metrics' }), (err: Error & { code?: string }) => err.code === 'ECONNREFUSED');
});

test('app 5xx and baton\'s own failures are counted apart: per service, per release, in /metrics', async (t) => {
  const app = await startServer(t, (req, res) => {
    req.resume();
    if (req.url === '/boom') res.writeHead(500).end('app error');
    else if (req.url === '/unavailable') res.writeHead(503).end('app busy');
    else if (req.url === '/cut') {
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
      setImmediate(() => req.socket.destroy());
    } else res.end('ok');
  });
  // An instance that resets every request before answering (a crashing app): baton answers 502.
  const dying = await startServer(t, (req) => req.socket.resetAndDestroy());
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('web', [target('a', app.port, 'r1')], { isDefault: true })] });
  for (const path of ['/', '/boom', '/boom', '/unavailable']) await request(port, { path });
  await assert.rejects(request(port, { path: '/cut' }));
  // baton's own 502 (the connection reset, no other instance) and 503 (no instance).
  proxy.apply({ services: [service('web', [target('dead', dying.port, 'r2')], { isDefault: true })] });
  assert.equal((await request(port, { path: '/' })).status, 502);
  proxy.apply({ services: [service('web', [], { isDefault: true })] });
  assert.equal((await request(port, { path: '/' })).status, 503);

  assert.deepEqual(proxy.counters('web'), { requests: 7, failed: 3, appErrors: 3, retries: 0, websockets: 0 });
  const byRelease = new Map(proxy.releaseMetrics('web').map((m) => [m.release, m]));
  assert.deepEqual([byRelease.get('r1')!.appErrors, byRelease.get('r1')!.failed], [3, 1], 'r1: three app 5xx, one cut response');
  assert.deepEqual([byRelease.get('r2')!.appErrors, byRelease.get('r2')!.failed], [0, 1], 'r2: baton\'s 502');
  assert.deepEqual([byRelease.get('-')!.appErrors, byRelease.get('-')!.failed], [0, 1], 'no release: baton\'s 503');
  const prom = parsePrometheus(proxy.prometheusText());
  assert.equal(prom.types.get('baton_app_errors_total'), 'counter');
  assert.equal(prom.types.get('baton_failed_requests_total'), 'counter');
  assert.equal(promValue(prom.samples, 'baton_app_errors_total', { service: 'web', release: 'r1' }), 3);
  assert.equal(promValue(prom.samples, 'baton_failed_requests_total', { service: 'web', release: 'r1' }), 1);
  assert.equal(promValue(prom.samples, 'baton_failed_requests_total', { service: 'web', release: 'r2' }), 1);
});
