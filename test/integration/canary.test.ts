// Progressive delivery under load, with real processes: a sticky 10% → 50% →
// 100% canary, beta testers, an analysis that rolls a bad canary back,
// maintenance mode and pause.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { createDaemon, waitUntil, type CliResult, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad, type LoadResult } from '../helpers/load.ts';

let d: TestDaemon;

function service(extra: string): string {
  return `  web:
    command: exec "${process.execPath}" server.mjs
    instances: 2
    health: { path: /healthz, interval: 200ms, timeout: 1s, start_timeout: 10s }
    drain_timeout: 2s
    stop_timeout: 3s
    standby: 0s
    maintenance: { retry_after: 7s, allow: [127.0.0.2] }
    pause: { max_queued: 100, max_wait: 20s }
${extra}`;
}

const PROMOTE_STEPS = `    canary:
      steps: [{ weight: 10 }, { pause: promote }, { weight: 50 }, { pause: promote }, { weight: 100 }]
      beta: { header: "X-Baton-Release: canary" }`;

before(async () => {
  d = await createDaemon({ start: false, metrics: true });
  await d.writeConfig(service(PROMOTE_STEPS));
  await d.start();
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
});
after(async () => {
  await d?.cleanup();
});

async function canaryAt(weight: number): Promise<void> {
  await waitUntil(`the canary to wait for a promote at ${weight}%`, async () => {
    const c = (await d.status('web')).services[0].canary;
    return c !== null && c.weight === weight && c.waiting === 'promote';
  }, 20_000, 100);
}

/** Share of cookieless requests answered by `version`, over n requests. */
async function share(version: string, n: number): Promise<number> {
  const load = startLoad({ url: d.url + '/', concurrency: 4, maxRequests: n, maxMs: 60_000 });
  await load.waitFor(n, 60_000);
  const r = await load.stop();
  assert.equal(r.failed, 0, r.errors.join('; '));
  return (r.bodies[version] ?? 0) / r.ok;
}

test('a sticky 10% → 50% → 100% canary: split within ±3 points, each visitor moves once, old → new', async () => {
  // Visitors with cookies, present before the rollout and through all of it.
  const visitors = startLoad({ url: d.url + '/', concurrency: 30, cookies: true, thinkMs: 20, maxMs: 120_000 });
  await visitors.waitFor(200, 10_000);
  const deploy = d.cli(['deploy', 'web', await d.release('v2'), '--strategy', 'canary'], 120_000);

  await canaryAt(10);
  const at10 = await share('v2', 2000);
  assert.ok(Math.abs(at10 - 0.1) <= 0.03, `at 10%: ${(at10 * 100).toFixed(1)}% of requests reached the canary`);
  const s = (await d.status('web')).services[0];
  assert.match(s.canary.release, /v2/);
  assert.equal(s.canary.step, 2);
  assert.ok(s.releases.some((r: any) => /v2/.test(r.release) && r.requests > 0), 'per-release figures are shown');

  // Beta testers reach the canary whatever the weight: by header, and by a one-time link's cookie.
  for (let i = 0; i < 20; i++) {
    const r = await request(d.url + '/', { headers: { 'x-baton-release': 'canary' } });
    assert.equal((await r.body.text()).trim(), 'v2');
  }
  const link = JSON.parse((await d.cli(['beta', 'web', '--json'])).stdout).url as string;
  const linkUrl = new URL(link);
  const visit = await request(`${d.url}${linkUrl.pathname}${linkUrl.search}`);
  await visit.body.text();
  assert.equal(visit.statusCode, 302);
  const betaCookie = String(visit.headers['set-cookie']).split(';')[0]!;
  for (let i = 0; i < 20; i++) {
    const r = await request(d.url + '/', { headers: { cookie: betaCookie } });
    assert.equal((await r.body.text()).trim(), 'v2');
  }
  const again = await request(`${d.url}${linkUrl.pathname}${linkUrl.search}`);
  await again.body.text();
  assert.equal(again.statusCode, 400, 'a beta link works once');

  const promoted = await d.cli(['promote', 'web', '--json']);
  assert.equal(promoted.code, 0, promoted.stderr);
  // promote answers once the next weight is routed, not before.
  assert.equal(JSON.parse(promoted.stdout).weight, 50);
  assert.equal((await d.status('web')).services[0].canary.weight, 50, 'routed by the time promote returned');
  await canaryAt(50);
  const at50 = await share('v2', 2000);
  assert.ok(Math.abs(at50 - 0.5) <= 0.03, `at 50%: ${(at50 * 100).toFixed(1)}% of requests reached the canary`);

  assert.equal((await d.cli(['promote', 'web'])).code, 0);
  const r = await deploy;
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const n = visitors.snapshot().total;
  await visitors.waitFor(n + 200, 20_000);
  // Every visitor came back after the last step (a total count could leave one on its last v1 answer).
  await visitors.waitForEach(2, 20_000);
  const v = await visitors.stop();
  assert.equal(v.failed, 0, v.errors.join('; '));
  for (const c of v.clients) assert.deepEqual(c.sequence, ['v1', 'v2'], `a visitor saw ${c.sequence.join(' → ')}`);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v2');
});

test('promote and abort with no canary running get a clear answer', async () => {
  const p = await d.cli(['promote', 'web']);
  assert.equal(p.code, 1);
  assert.match(p.stderr, /no canary of web is running/);
  const a = await d.cli(['abort', 'web']);
  assert.equal(a.code, 1);
  assert.match(a.stderr, /no deployment of web is running: nothing to abort/);
});

test('a canary answering 5% 5xx is rolled back by analysis; visitors on the stable release see no failure', async () => {
  await d.writeConfig(service(`    canary:
      steps: [{ weight: 30 }, { analysis: 2s }, { weight: 100 }]
      analysis: { min_requests: 60, max_error_rate: 0.01 }`));
  assert.equal((await d.cli(['reload'])).code, 0);
  const visitors = startLoad({ url: d.url + '/', concurrency: 20, cookies: true, thinkMs: 10, maxMs: 120_000 });
  await visitors.waitFor(100, 10_000);
  const r: CliResult = await d.cli(['deploy', 'web', await d.release('v3', { APP_ERROR_EVERY: '20' }), '--strategy', 'canary'], 120_000);
  const n = visitors.snapshot().total;
  await visitors.waitFor(n + 100, 20_000);
  const v: LoadResult = await visitors.stop();
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /analysis failed/);
  assert.match(r.stdout, /5xx rate [4-6]\.\d+% \(\d+\/\d+\) vs stable 0\.00%; limit 1\.00%/);
  // The canary's 500s are the app's errors, reported as such: never "0 failed" with nothing else said.
  const summary = /(\d+) request\(s\) answered during the deploy: (\d+) failed in baton[^,]*, (\d+) answered 5xx by the app/.exec(r.stdout);
  assert.ok(summary !== null, `the summary names app 5xx and baton's failures apart: ${r.stdout}`);
  assert.ok(Number(summary[3]) > 0, 'the canary\'s 5xx are counted');
  assert.equal(Number(summary[2]), 0, 'baton itself failed nothing');
  const h = JSON.parse((await d.cli(['history', 'web', '--json'])).stdout)[0];
  assert.equal(h.state, 'rolled_back');
  assert.ok(h.events.some((e: any) => /5xx rate/.test(e.message)), 'the failing figures are in the record');
  const stable = v.clients.filter((c) => !c.sequence.includes('v3') && !c.failures.some((f) => f.includes('v3')));
  assert.ok(stable.length > 0, 'some visitors stayed on the stable release');
  for (const c of stable) assert.equal(c.failed, 0, c.failures.join('; '));
  for (const c of v.clients) for (const f of c.failures) assert.match(f, /v3 error/, 'only the canary failed requests');
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v2');
  assert.equal((await d.status('web')).services[0].instances.length, 2, 'the canary is stopped');
});

test('an abort during an analysis rolls back at once with 0 failed requests', async () => {
  await d.writeConfig(service(`    canary:
      steps: [{ weight: 50 }, { analysis: 60s }, { weight: 100 }]`));
  assert.equal((await d.cli(['reload'])).code, 0);
  const visitors = startLoad({ url: d.url + '/', concurrency: 10, cookies: true, thinkMs: 10, maxMs: 120_000 });
  await visitors.waitFor(50, 10_000);
  const deploy = d.cli(['deploy', 'web', await d.release('v4'), '--strategy', 'canary'], 120_000);
  await waitUntil('the canary analysis to run', async () => (await d.status('web')).services[0].canary?.waiting === 'analysis', 20_000, 100);
  const a = await d.cli(['abort', 'web']);
  assert.equal(a.code, 0, a.stderr);
  // abort answers once every visitor is back on the stable release.
  assert.match(a.stdout, /all traffic is back on the stable release/);
  assert.equal((await d.status('web')).services[0].canary, null, 'no canary routed when abort returned');
  const r = await deploy;
  assert.doesNotMatch(r.stdout, /5xx rate/, 'the abort did not wait for the analysis window\'s verdict');
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /aborted by the operator/);
  const n = visitors.snapshot().total;
  await visitors.waitFor(n + 50, 20_000);
  await visitors.waitForEach(2, 20_000);
  const v = await visitors.stop();
  assert.equal(v.failed, 0, v.errors.join('; '));
  for (const c of v.clients) assert.equal(c.sequence.at(-1), 'v2', `a visitor ended on ${c.sequence.join(' → ')}`);
  assert.equal(JSON.parse((await d.cli(['history', 'web', '--json'])).stdout)[0].state, 'rolled_back');
});

test('maintenance: 503 with Retry-After to everyone but the allow-list; the health endpoint stays 200', async () => {
  const before = (await d.status('web')).services[0].counters;
  assert.equal((await d.cli(['maintenance', 'web', 'on', '--message', 'Back at five'])).code, 0);
  const r = await request(d.url + '/');
  const body = await r.body.text();
  assert.equal(r.statusCode, 503);
  assert.equal(r.headers['retry-after'], '7');
  assert.match(body, /Back at five/);
  const allowed = startLoad({ url: d.url + '/', concurrency: 1, localAddress: '127.0.0.2', maxRequests: 10 });
  await allowed.waitFor(10, 10_000);
  const a = await allowed.stop();
  assert.deepEqual(a.bodies, { v2: 10 });
  assert.equal((await request(d.url + '/_baton/health')).statusCode, 200);
  assert.equal((await d.status('web')).services[0].maintenance.message, 'Back at five');
  // The maintenance page is baton's answer on purpose: not a failure.
  const after = (await d.status('web')).services[0].counters;
  assert.ok(after.requests >= before.requests + 11);
  assert.equal(after.failed, before.failed, 'maintenance 503s are not counted as failed');
  const text = (await d.cli(['status', 'web'])).stdout;
  assert.match(text, new RegExp(`failed in baton: ${after.failed}, app 5xx: ${after.appErrors}`));
  assert.equal((await d.cli(['maintenance', 'web', 'off'])).code, 0);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v2');
});

test('pause holds requests and resume delivers them all', async () => {
  assert.equal((await d.cli(['pause', 'web'])).code, 0);
  const held = Array.from({ length: 20 }, () => request(d.url + '/').then(async (r) => ({ status: r.statusCode, body: (await r.body.text()).trim() })));
  const health = await request(d.url + '/_baton/health');
  await health.body.text();
  assert.equal(health.statusCode, 200);
  await waitUntil('the 20 requests to be held by the pause', async () => {
    const m = await request(`http://127.0.0.1:${d.metricsPort}/metrics`);
    return /^baton_held_requests\{service="web"\} 20$/m.test(await m.body.text());
  }, 10_000);
  assert.equal((await d.cli(['resume', 'web'])).code, 0);
  const results = await Promise.all(held);
  assert.deepEqual(results, Array.from({ length: 20 }, () => ({ status: 200, body: 'v2' })));
});

test('the metrics endpoint serves per-release Prometheus figures on its own listener', async () => {
  const r = await request(`http://127.0.0.1:${d.metricsPort}/metrics`);
  const text = await r.body.text();
  assert.equal(r.statusCode, 200);
  assert.match(text, /baton_requests_total\{service="web",release="[^"]*v2[^"]*"\} \d+/);
  // The aborted canary v3 has no instance left: its series ended with them (bounded cardinality).
  assert.doesNotMatch(text, /release="[^"]*v3[^"]*"/);
  assert.match(text, /baton_request_duration_seconds_bucket\{/);
});
