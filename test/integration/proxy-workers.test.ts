// proxy.workers: 2 — two proxy worker processes accept from the daemon's one
// listening socket. A deploy under load (keep-alive and new-connection
// clients) fails nothing and moves v1 → v2; both workers serve; status and
// /metrics show the workers' counters summed; a worker killed with SIGKILL
// under load is replaced while the other keeps serving; pause holds requests
// in each worker; a WebSocket is closed by its worker's drain; a beta link
// works once; a host drain reaches every worker; workers leave with their
// daemon; `baton upgrade` hands the sockets to a new daemon and its workers.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import WebSocket from 'ws';
import { createDaemon, isGone, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad, type LoadResult } from '../helpers/load.ts';

let d: TestDaemon;
before(async () => {
  // The canary plan is used only by the beta link test (`--strategy canary`); other deploys are blue/green.
  d = await createDaemon({ start: false, metrics: true, services: serviceYaml({ extra: 'canary:\n  steps: [{ weight: 10 }, { pause: promote }, { weight: 100 }]' }) });
  const text = await readFile(d.configFile, 'utf8');
  await writeFile(d.configFile, text.replace('services:\n', 'proxy: { workers: 2 }\nservices:\n'));
  await d.start();
  const r = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
});
after(async () => {
  await d?.cleanup();
});

interface WorkerRow {
  index: number;
  pid: number | null;
  requests: number;
  restarts: number;
}

async function workers(): Promise<WorkerRow[]> {
  return (await d.status()).daemon.proxyWorkers as WorkerRow[];
}

async function metricsText(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${d.metricsPort}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

/** Sum of a metric family's samples (optionally those whose labels match). */
function metricSum(text: string, name: string, labels = /.*/): number {
  let n = 0;
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`).exec(line);
    if (m && labels.test(m[1]!)) n += Number(m[2]);
  }
  return n;
}

function refused(r: LoadResult): string[] {
  return [...r.errors, ...r.clients.flatMap((c) => c.failures)].filter((e) => /ECONNREFUSED|refused/i.test(e));
}

test('two workers, each its own process, neither the daemon', async () => {
  const s = await d.status();
  const ws = s.daemon.proxyWorkers as WorkerRow[];
  assert.equal(ws.length, 2);
  for (const w of ws) {
    assert.equal(typeof w.pid, 'number');
    assert.notEqual(w.pid, s.daemon.pid);
  }
  assert.notEqual(ws[0]!.pid, ws[1]!.pid);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v1');
});

test('deploy v2 under keep-alive and new-connection load: 0 failed, v1 → v2, both workers served, counters summed', async () => {
  const v2 = await d.release('v2');
  const before = (await d.status('web')).services[0].counters.requests as number;
  const keep = startLoad({ url: d.url + '/', concurrency: 4, maxMs: 60_000 });
  const fresh = startLoad({ url: d.url + '/', concurrency: 4, keepAlive: false, maxMs: 60_000 });
  await keep.waitFor(100, 15_000);
  await fresh.waitFor(100, 15_000);
  const r = await d.cli(['deploy', 'web', v2]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const n = keep.snapshot().total + fresh.snapshot().total;
  await waitUntil('100 more requests after the deploy', () => keep.snapshot().total + fresh.snapshot().total >= n + 100, 15_000);
  // Every client made a request after the deploy before its last version is asserted (a total count can
  // be reached while one client still waits on an answer from v1).
  await Promise.all([keep.waitForEach(2, 15_000), fresh.waitForEach(2, 15_000)]);
  const [a, b] = await Promise.all([keep.stop(), fresh.stop()]);
  for (const [res, label] of [[a, 'keep-alive'], [b, 'new connections']] as const) {
    assert.equal(res.failed, 0, `${label}: ${res.failed} of ${res.total} failed: ${res.errors.join('; ')}`);
    assert.deepEqual(Object.keys(res.bodies).sort(), ['v1', 'v2'], `${label}: ${JSON.stringify(res.bodies)}`);
    for (const seq of res.sequences) assert.equal(seq.at(-1), 'v2', `${label}: a client ended on ${seq.join(' → ')}`);
  }
  for (const seq of a.sequences) assert.deepEqual(seq, ['v1', 'v2'], `a keep-alive client saw ${seq.join(' → ')}`);
  const total = a.total + b.total;

  // Each worker reports every 500 ms: poll until the sums include everything the clients got.
  await waitUntil('the workers\' counters to include the load', async () => {
    const c = (await d.status('web')).services[0].counters;
    return c.requests >= before + total;
  }, 10_000);
  const s = await d.status('web');
  const ws = s.daemon.proxyWorkers as WorkerRow[];
  for (const w of ws) assert.ok(w.requests > 0, `worker ${w.index} served no request: ${JSON.stringify(ws)}`);
  const c = s.services[0].counters;
  assert.equal(c.failed, 0);
  assert.equal(c.requests, ws.reduce((x, w) => x + w.requests, 0), `status's counters are the workers' sum: ${JSON.stringify({ c, ws })}`);
  // /metrics: the per-release figures summed over the workers, and per-worker counts.
  const text = await metricsText();
  assert.equal(metricSum(text, 'baton_requests_total', /service="web"/), c.requests, text);
  assert.ok(metricSum(text, 'baton_requests_total', /release="v2[^"]*"/) > 0, text);
  for (const w of ws) assert.equal(metricSum(text, 'baton_proxy_worker_requests_total', new RegExp(`worker="${w.index}"`)), w.requests);
  assert.equal(metricSum(text, 'baton_failed_requests_total'), 0);
});

test('a worker killed with SIGKILL under load: replaced on the same socket, the other kept serving, no connection refused', async () => {
  const ws = await workers();
  const victim = ws[0]!;
  const survivor = ws[1]!;
  const keep = startLoad({ url: d.url + '/', concurrency: 4, maxMs: 60_000 });
  const fresh = startLoad({ url: d.url + '/', concurrency: 4, keepAlive: false, maxMs: 60_000 });
  await keep.waitFor(100, 15_000);
  await fresh.waitFor(100, 15_000);
  const survivorBefore = survivor.requests;
  process.kill(victim.pid!, 'SIGKILL');
  const atKill = fresh.snapshot().total;
  await waitUntil('a new worker 0', async () => {
    const now = (await workers())[0]!;
    return now.pid !== victim.pid && now.pid !== null && now.restarts === 1 && now.requests > 0;
  }, 30_000, 100);
  await waitUntil('200 more new-connection requests', () => fresh.snapshot().total >= atKill + 200, 15_000);
  const [a, b] = await Promise.all([keep.stop(), fresh.stop()]);
  // Only requests in flight on the killed worker's connections can fail: at most one per client.
  assert.equal(refused(b).length, 0, `new connections were refused: ${refused(b).join('; ')}`);
  assert.ok(b.failed <= 4, `new connections: ${b.failed} failed (at most the 4 in flight): ${b.errors.join('; ')}`);
  assert.ok(a.failed <= 4, `keep-alive: ${a.failed} failed (at most the 4 in flight): ${a.errors.join('; ')}`);
  assert.deepEqual(Object.keys(a.bodies), ['v2']);
  const after = await workers();
  assert.equal(after[1]!.pid, survivor.pid, 'the other worker was not restarted');
  assert.equal(after[1]!.restarts, 0);
  assert.ok(after[1]!.requests > survivorBefore, 'the other worker kept serving');
  // The dead worker's counts stay in the sums (up to its last report).
  const c = (await d.status('web')).services[0].counters;
  assert.ok(c.requests >= after[0]!.requests + after[1]!.requests + victim.requests, JSON.stringify({ c, after, victim }));
});

test('pause holds requests in every worker (held count summed) and resume delivers them all', async () => {
  assert.equal((await d.cli(['pause', 'web'])).code, 0);
  // New connections: the kernel hands them to either worker.
  const held = Array.from({ length: 10 }, () => fetch(d.url + '/', { headers: { connection: 'close' } }).then(async (r) => ({ status: r.status, body: (await r.text()).trim() })));
  await waitUntil('the 10 requests to be held by the pause', async () => /^baton_held_requests\{service="web"\} 10$/m.test(await metricsText()), 10_000, 100);
  assert.equal((await d.cli(['resume', 'web'])).code, 0);
  const results = await Promise.all(held);
  assert.deepEqual(results, Array.from({ length: 10 }, () => ({ status: 200, body: 'v2' })));
  await waitUntil('released counted', async () => /^baton_held_requests\{service="web"\} 0$/m.test(await metricsText()), 10_000, 100);
});

test('a WebSocket held by a worker survives the switch and is closed with 1001 by that worker\'s drain, counted in the deploy', async () => {
  const ws = new WebSocket(d.url.replace('http', 'ws') + '/ws');
  ws.on('error', () => {});
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  const first = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no WebSocket message within 5 s')), 5000);
    ws.once('message', (m) => {
      clearTimeout(t);
      resolve(String(m));
    });
  });
  assert.equal(first, 'hello v2');
  const r = await d.cli(['deploy', 'web', await d.release('v3')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(await closed, 1001);
  assert.match(r.stdout, /1 WebSocket\(s\) closed with 1001/);
  await waitUntil('the upgrade counted', async () => (await d.status('web')).services[0].counters.websockets >= 1, 10_000);
});

test('a beta link works once across the workers: of 8 concurrent visits on separate connections, one is accepted', async () => {
  const deploy = d.cli(['deploy', 'web', await d.release('v4'), '--strategy', 'canary'], 60_000);
  await waitUntil('the canary to wait for a promote', async () => (await d.status('web')).services[0].canary?.waiting === 'promote', 20_000, 100);
  const link = new URL(JSON.parse((await d.cli(['beta', 'web', '--json'])).stdout).url as string);
  const statuses = await Promise.all(
    Array.from({ length: 8 }, async () => {
      const r = await fetch(`${d.url}${link.pathname}${link.search}`, { redirect: 'manual', headers: { connection: 'close' } });
      await r.text();
      return r.status;
    }),
  );
  assert.deepEqual([...statuses].sort((a, b) => a - b), [302, 400, 400, 400, 400, 400, 400, 400], JSON.stringify(statuses));
  assert.equal((await d.cli(['abort', 'web'])).code, 0);
  await deploy;
});

test('a host drain reaches every worker: /_baton/health turns 503 on all of them, and 200 again', async () => {
  // Separate connections, so that the kernel hands them to either worker.
  const health = async (): Promise<number[]> =>
    Promise.all(Array.from({ length: 8 }, async () => {
      const r = await fetch(`${d.url}/_baton/health`, { headers: { connection: 'close' } });
      await r.text();
      return r.status;
    }));
  assert.equal((await d.cli(['drain', '--reason', 'workers test'])).code, 0);
  // Each worker is told over its IPC channel: a few milliseconds later than the CLI's answer, at most.
  await waitUntil('every worker to answer 503', async () => (await health()).every((x) => x === 503), 10_000, 50);
  assert.equal((await d.cli(['undrain'])).code, 0);
  await waitUntil('every worker to answer 200', async () => (await health()).every((x) => x === 200), 10_000, 50);
});

test('kill -9 of the daemon: its workers leave by themselves (no orphan serves a stale routing), and a new daemon binds the port again', async () => {
  const ws = await workers();
  const pids = ws.map((w) => w.pid!);
  await d.kill9();
  await waitUntil('the orphaned workers to exit', () => pids.every((pid) => isGone(pid)), 20_000, 100);
  await d.start();
  const after = await workers();
  assert.equal(after.length, 2);
  for (const w of after) assert.ok(!pids.includes(w.pid!), 'new workers');
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v3');
});

test('baton upgrade under load: a new daemon and new workers take the same sockets, 0 failed, the old workers drain and exit, counters go on', async () => {
  const before = await d.status('web');
  const oldPid = before.daemon.pid as number;
  const oldWorkers = (before.daemon.proxyWorkers as WorkerRow[]).map((w) => w.pid!);
  const instancePids = before.services[0].instances.map((i: any) => i.pid).sort();
  const countedBefore = before.services[0].counters.requests as number;
  const keep = startLoad({ url: d.url + '/', concurrency: 4, maxMs: 90_000 });
  const fresh = startLoad({ url: d.url + '/', concurrency: 4, keepAlive: false, maxMs: 90_000 });
  await keep.waitFor(100, 15_000);
  await fresh.waitFor(100, 15_000);
  const r = await d.cli(['upgrade', '--json'], 90_000);
  assert.equal(r.code, 0, `baton upgrade failed:\n${r.stdout}\n${r.stderr}`);
  assert.equal(JSON.parse(r.stdout).oldPid, oldPid);
  const n = keep.snapshot().total + fresh.snapshot().total;
  await waitUntil('200 more requests after the upgrade', () => keep.snapshot().total + fresh.snapshot().total >= n + 200, 15_000);
  await waitUntil(`the old daemon (pid ${oldPid}) and its workers to exit`, () => [oldPid, ...oldWorkers].every((pid) => isGone(pid)), 30_000, 100);
  const [a, b] = await Promise.all([keep.stop(), fresh.stop()]);
  for (const [res, label] of [[a, 'keep-alive'], [b, 'new connections']] as const) {
    assert.equal(res.failed, 0, `${label}: ${res.failed} of ${res.total} failed: ${res.errors.join('; ')}`);
    assert.deepEqual(Object.keys(res.bodies), ['v3']);
  }
  const after = await d.status('web');
  assert.notEqual(after.daemon.pid, oldPid);
  const ws = after.daemon.proxyWorkers as WorkerRow[];
  assert.equal(ws.length, 2);
  for (const w of ws) assert.ok(w.pid !== null && !oldWorkers.includes(w.pid), `worker ${w.index} is new`);
  assert.deepEqual(after.services[0].instances.map((i: any) => i.pid).sort(), instancePids, 'instances re-adopted, not restarted');
  // The old daemon's totals (its workers' included) were handed over once it drained.
  const sent = a.total + b.total;
  await waitUntil('the counters to include both generations', async () => (await d.status('web')).services[0].counters.requests >= countedBefore + sent, 10_000);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v3');
});
