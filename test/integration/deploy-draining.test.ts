// What happens while the old release drains: `--until switched` returns at the
// switch, and the operator can roll back (or deploy again) at once.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createDaemon, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad, type LoadResult } from '../helpers/load.ts';

let d: TestDaemon;
/** WebSockets that hold a release's drain open across the tests below. */
const sockets: WebSocket[] = [];
before(async () => {
  // A long drain: an open WebSocket holds the old instances for up to 30 s.
  d = await createDaemon({ services: serviceYaml({ instances: 2 }).replace('drain_timeout: 5s', 'drain_timeout: 30s') });
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
});
after(async () => {
  for (const ws of sockets) ws.terminate();
  await d?.cleanup();
});

/** v1, v2 … of a release id such as 20261130-144512-v2-3 or v2-3-c261927b7ea4. */
const tag = (release: string): string => /(?:^|-)(v\d+)-\d+(?:-|$)/.exec(release)?.[1] ?? release;

function assertClean(r: LoadResult, label: string): void {
  assert.equal(r.failed, 0, `${label}: ${r.failed} of ${r.total} requests failed: ${r.errors.join('; ')}`);
  assert.ok(r.total > 20, `${label}: only ${r.total} requests ran`);
}

function openSocket(): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(d.url.replace('http', 'ws') + '/ws');
    const t = setTimeout(() => reject(new Error('no WebSocket greeting within 5 s')), 5000);
    ws.once('message', () => {
      clearTimeout(t);
      resolve(ws);
    });
    ws.once('error', reject);
    sockets.push(ws);
  });
}

function echo(ws: WebSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no WebSocket echo within 5 s')), 5000);
    ws.once('message', (m) => {
      clearTimeout(t);
      resolve(String(m));
    });
    ws.send(text);
  });
}

const lines = (stdout: string): any[] => stdout.trim().split('\n').map((l) => JSON.parse(l));

let onV1: WebSocket;
let onV2: WebSocket;

test('deploy --until switched returns at the switch while a WebSocket holds the old release; status shows the drain', async (t) => {
  onV1 = await openSocket();
  const load = startLoad({ url: d.url + '/', concurrency: 3, maxMs: 60_000 });
  t.after(() => load.stop());
  await load.waitFor(30, 10_000);
  const r = await d.cli(['deploy', 'web', await d.release('v2'), '--until', 'switched', '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const out = lines(r.stdout);
  const result = out.at(-1);
  assert.equal(result.type, 'result');
  assert.equal(result.outcome.state, 'switched');
  assert.ok(out.some((l) => l.type === 'event' && /traffic switched to .*v2/.test(l.event.message)), 'the switch event was streamed');
  assert.ok(!out.some((l) => l.type === 'event' && /old instances drained/.test(l.event.message)), 'returned before the drain ended');

  const s = (await d.status('web')).services[0];
  assert.match(s.currentRelease, /v2/);
  assert.equal(s.instances.filter((i: any) => i.role === 'draining' && /v1/.test(i.release)).length, 2, JSON.stringify(s.instances));
  assert.equal(s.draining.length, 1);
  assert.match(s.draining[0].release, /v1/);
  assert.equal(s.draining[0].seq, result.outcome.seq);
  const human = await d.cli(['status', 'web']);
  assert.match(human.stdout, /draining: .*v1.* \(deployment #\d+, 1 WebSocket/);

  const n = load.snapshot().total;
  await load.waitFor(n + 30, 10_000);
  assertClean(await load.stop(), 'deploy --until switched');
});

test('deploy --steps: a bad plan is refused with a clear message and changes nothing', async () => {
  const before = (await d.status('web')).services[0].currentRelease;
  const r = await d.cli(['deploy', 'web', await d.release('v9'), '--steps', '50,10']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /--steps "50,10": weights must grow: 10 after 50/);
  const r2 = await d.cli(['deploy', 'web', await d.release('v9'), '--steps', '10', '--strategy', 'blue_green']);
  assert.equal(r2.code, 2);
  assert.match(r2.stderr, /--steps is a canary plan/);
  assert.equal((await d.status('web')).services[0].currentRelease, before);
});

test('rollback while the old release drains: back on its still-running instances at once, 0 failed; both deployments recorded', async (t) => {
  // From the test above: v2 serves, v1 drains (held by a WebSocket).
  const before = (await d.status('web')).services[0];
  assert.deepEqual(before.draining.map((x: any) => tag(x.release)), ['v1'], 'v1 is still draining');
  const v1Pids = before.instances.filter((i: any) => i.role === 'draining').map((i: any) => i.pid).sort();
  const draining = before.draining[0].seq;
  onV2 = await openSocket(); // v2 will drain in its turn

  const load = startLoad({ url: d.url + '/', concurrency: 3, maxMs: 60_000 });
  t.after(() => load.stop());
  await load.waitFor(30, 10_000);
  const r = await d.cli(['rollback', 'web', '--until', 'switched', '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const out = lines(r.stdout);
  const outcome = out.at(-1).outcome;
  assert.equal(outcome.kind, 'rollback');
  assert.equal(outcome.state, 'switched');
  assert.ok(out.some((l) => l.type === 'event' && /still running \(draining after deployment #\d+\)/.test(l.event.message)), 'reused the draining instances');
  assert.ok(!out.some((l) => l.type === 'event' && /instance .* started/.test(l.event.message)), 'no new instance');
  const n = load.snapshot().total;
  await load.waitFor(n + 30, 10_000);
  await load.waitForEach(2, 10_000);
  const res = await load.stop();
  assertClean(res, 'rollback during the drain');
  t.diagnostic(`rollback during the drain: traffic switched ${outcome.switchAfterMs} ms after it began; ${res.total} requests, ${res.failed} failed`);
  for (const seq of res.sequences) assert.equal(seq.at(-1), 'v1');

  const s = (await d.status('web')).services[0];
  assert.equal(tag(s.currentRelease), 'v1');
  assert.deepEqual(s.instances.filter((i: any) => i.role === 'current').map((i: any) => i.pid).sort(), v1Pids, 'the same v1 processes serve again');
  assert.deepEqual(s.draining.map((x: any) => tag(x.release)), ['v2']);
  assert.equal(await echo(onV1, 'v1 socket'), 'v1 socket', 'the WebSocket on v1 was never closed');

  // The deployment whose drain was cut short ended done, and says why; the rollback is its own deployment.
  await waitUntil('the taken-over deployment to end', async () => {
    const h = JSON.parse((await d.cli(['history', 'web', '--json'])).stdout);
    return h.find((x: any) => x.seq === draining)?.state === 'done';
  }, 10_000);
  const h = JSON.parse((await d.cli(['history', 'web', '--json'])).stdout);
  const old = h.find((x: any) => x.seq === draining);
  assert.ok(old.events.some((e: any) => new RegExp(`drain cut short: deployment #${outcome.seq} routed to the instances of .*v1`).test(e.message)), JSON.stringify(old.events));
  assert.equal(h.find((x: any) => x.id === outcome.deploymentId).kind, 'rollback');
});

test('a deploy of a third release while two drain leaves those drains to finish; abort after the switch says to roll back', async () => {
  // v1 serves (onV1 open); v2 drains (onV2 open).
  const r3 = await d.cli(['deploy', 'web', await d.release('v3'), '--until', 'switched']);
  assert.equal(r3.code, 0, r3.stdout + r3.stderr);
  assert.match(r3.stdout, /traffic switched at .*the old instances drain in the daemon/);
  let s = (await d.status('web')).services[0];
  assert.equal(tag(s.currentRelease), 'v3');
  assert.deepEqual(s.draining.map((x: any) => tag(x.release)).sort(), ['v1', 'v2']);

  const a = await d.cli(['abort', 'web']);
  assert.equal(a.code, 1);
  assert.match(a.stderr, /already switched traffic to .*v3.*roll back with `baton rollback web`/);

  // Both drains go on: the WebSockets still work. Each ends when its socket closes:
  // v2 is stopped (no longer the rollback target), v1 becomes the warm standby.
  assert.equal(await echo(onV2, 'v2 socket'), 'v2 socket');
  assert.equal(await echo(onV1, 'v1 socket'), 'v1 socket');
  onV2.close();
  await waitUntil('v2 to be stopped', async () => {
    s = (await d.status('web')).services[0];
    return !s.instances.some((i: any) => tag(i.release) === 'v2');
  }, 20_000);
  assert.ok(s.instances.some((i: any) => tag(i.release) === 'v1' && i.role === 'draining'), 'v1 still drains');
  onV1.close();
  await waitUntil('v1 to be the warm standby', async () => {
    s = (await d.status('web')).services[0];
    return s.draining.length === 0 && s.instances.filter((i: any) => tag(i.release) === 'v1' && i.role === 'standby').length === 2;
  }, 20_000);
  assert.equal(tag(s.standbyRelease), 'v1');
  const h = JSON.parse((await d.cli(['history', 'web', '--json'])).stdout);
  assert.deepEqual(h.slice(0, 4).map((x: any) => `${x.kind} ${tag(x.toRelease)} ${x.state}`), ['deploy v3 done', 'rollback v1 done', 'deploy v2 done', 'deploy v1 done']);
});

test('deploy --steps gives this deploy its own canary plan; promote answers once the next weight is routed', async (t) => {
  const load = startLoad({ url: d.url + '/', concurrency: 3, cookies: true, maxMs: 60_000 });
  t.after(() => load.stop());
  await load.waitFor(30, 10_000);
  const deploy = d.cli(['deploy', 'web', await d.release('v5'), '--steps', '25,promote']);
  await waitUntil('the canary to wait for promote at 25%', async () => {
    const c = (await d.status('web')).services[0].canary;
    return c?.weight === 25 && c.waiting === 'promote';
  }, 20_000, 100);
  assert.deepEqual((await d.status('web')).services[0].canary.steps, ['25%', 'pause until promoted', '100%']);
  const p = await d.cli(['promote', 'web', '--json']);
  assert.equal(p.code, 0, p.stderr);
  assert.equal(JSON.parse(p.stdout).weight, 100);
  const r = await deploy;
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /canary rollout of .*v5.*: 25% → pause until promoted → 100%/);
  const n = load.snapshot().total;
  await load.waitFor(n + 30, 10_000);
  assertClean(await load.stop(), 'canary with --steps');
  assert.equal(tag((await d.status('web')).services[0].currentRelease), 'v5');
});
