// Front services in the dashboard, rendered from plain status data: the
// button a target gets (drain, or undrain when the operator drained it),
// where it posts and what it asks, why a target is out, escaping, and the
// live figures per target (a target is a `release` in the proxy's counters).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FrontServiceStatus, FrontTargetStatus, StatusResponse } from '../../src/control/protocol.ts';
import { Assets } from '../../src/dashboard/assets.ts';
import { frontFragments, frontOverview, frontOverviewFragments, targetActionPath } from '../../src/dashboard/front-pages.ts';
import { LiveFigures } from '../../src/dashboard/live.ts';
import type { PageContext } from '../../src/dashboard/pages.ts';
import { LATENCY_BUCKETS_MS } from '../../src/proxy/index.ts';
import type { ReleaseMetrics } from '../../src/proxy/types.ts';

function target(name: string, over: Partial<FrontTargetStatus> = {}): FrontTargetStatus {
  return {
    name, address: `10.0.0.${name.length}:80`, weight: 1, effectiveWeight: 1, state: 'up', inRotation: true, reason: null, agent: null, operator: null,
    since: 0, lastCheckAt: 0, inflight: 0, websockets: 0, requests: 1234, status: { '1xx': 0, '2xx': 1200, '3xx': 0, '4xx': 30, '5xx': 4 }, connectionErrors: 0, retries: 0, p99Ms: 25, ...over,
  };
}

const shop: FrontServiceStatus = {
  name: 'shop', hosts: ['shop.example'], isDefault: false, balance: 'least_outstanding',
  check: { path: '/_baton/health', intervalMs: 1000, timeoutMs: 500, healthyThreshold: 2, unhealthyThreshold: 3 },
  counters: {} as FrontServiceStatus['counters'],
  targets: [
    target('web1'),
    target('web2', { state: 'drain', inRotation: false, reason: 'drained here by the operator: <b>disk</b>', operator: { mode: 'drain', since: 0, reason: '<b>disk</b>' } }),
    target('web3', { state: 'down', inRotation: false, reason: 'connect ECONNREFUSED 10.0.0.4:80', weight: 4, effectiveWeight: 2 }),
  ],
};

function metrics(release: string, requests: number, appErrors = 0): ReleaseMetrics {
  const counts = LATENCY_BUCKETS_MS.map((b) => (b >= 10 ? requests : 0));
  return { service: 'shop', release, requests, status: { '1xx': 0, '2xx': requests - appErrors, '3xx': 0, '4xx': 0, '5xx': appErrors }, connectionErrors: 0, failed: 0, appErrors, retries: 0, inflight: 0, websockets: 0, websocketsTotal: 0, latency: { bucketsMs: LATENCY_BUCKETS_MS, counts, sumMs: requests * 5 } };
}

const ctx: PageContext = { assets: Assets.load(), csrf: 'CSRF-TOKEN', services: ['shop'], flash: null };

test('each target gets the button for what it can be asked: drain, or undrain once the operator drained it', () => {
  const live = new LiveFigures({ services: () => ['shop'], metrics: () => [] });
  const table = frontFragments(ctx, shop, live)['targets']!.value;
  for (const [name, verb, label] of [['web1', 'drain', 'Drain web1'], ['web2', 'undrain', 'Undrain web2'], ['web3', 'drain', 'Drain web3']] as const) {
    const row = new RegExp(`<tr data-target="${name}"[^]*?</tr>`).exec(table)?.[0] ?? '';
    assert.ok(row.includes(`action="${targetActionPath('shop', name, verb)}"`), `${name}: ${row}`);
    assert.ok(row.includes(`>${label}</button>`), `${name}: ${row}`);
    assert.match(row, /data-confirm="[^"]+\?"/, `${name} asks first`);
    assert.ok(row.includes('name="_csrf" value="CSRF-TOKEN"'), `${name}'s form carries the CSRF token`);
  }
  assert.equal(targetActionPath('shop', 'web2', 'undrain'), '/services/shop/targets/web2/undrain');
  // Why a target is out, escaped; the weight in use beside the configured one.
  assert.match(table, /out<\/span> <span class="muted">drained here by the operator: &lt;b&gt;disk&lt;\/b&gt;/);
  assert.match(table, /out<\/span> <span class="muted">connect ECONNREFUSED 10\.0\.0\.4:80/);
  assert.match(table, /2 <span class="muted">of 4<\/span>/);
  assert.ok(!table.includes('<b>disk'), 'no markup from a reason');
  assert.match(frontFragments(ctx, shop, live)['summary']!.value, /1 of 3/);
  assert.match(frontFragments(ctx, shop, live)['counters']!.value, /<td class="num" data-k="requests">1,234<\/td>/);
});

test('the overview: one table per front service, a row per target, with its live figures', () => {
  let now = { web1: 0, web2: 0 };
  const live = new LiveFigures({ services: () => ['shop'], metrics: () => [metrics('web1', now.web1, now.web1 / 10), metrics('web2', now.web2)] });
  live.sample();
  now = { web1: 100, web2: 40 };
  live.sample();
  const status = { services: [], fronts: [shop] } as unknown as StatusResponse;
  const frags = frontOverviewFragments(status, live);
  // Per target, not the service's sum: web1 had 100 requests (10 of them the app's 5xx), web2 40.
  const r1 = Number(frags['front-shop-web1-rps']!.value);
  const r2 = Number(frags['front-shop-web2-rps']!.value);
  assert.ok(r1 > 0 && r2 > 0 && Math.abs(r1 / r2 - 2.5) < 0.01, `web1 ${r1}/s, web2 ${r2}/s`);
  assert.equal(frags['front-shop-web1-err']!.value, '10.0%');
  assert.equal(frags['front-shop-web2-err']!.value, '0.0%');
  assert.equal(frags['front-shop-web3-rps']!.value, '0.00');
  assert.equal(frags['front-shop-web3-p99']!.value, '–');
  assert.match(frags['front-shop-count']!.value, /1 of 3 targets in rotation/);
  const page = frontOverview(status, frags)!.value;
  for (const t of ['web1', 'web2', 'web3']) assert.match(page, new RegExp(`<tr data-target="${t}"><th scope="row">${t} `));
  assert.match(page, /<a href="\/services\/shop">shop<\/a>/);
  assert.equal(frontOverview({ services: [] } as unknown as StatusResponse, {}), null, 'no front service: nothing');
});
