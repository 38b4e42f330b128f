// `baton upgrade` under load: the listening sockets go to the new daemon with
// no moment when the port is closed, the instances are re-adopted (same
// pids), WebSockets stay open on the old daemon until they close or its drain
// deadline, and the store's history continues.

import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import WebSocket from 'ws';
import { Client, request } from 'undici';
import { createDaemon, freePort, isGone, serviceYaml, waitUntil, withFreePort, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad, type RunningLoad } from '../helpers/load.ts';
import { withTimeout } from '../helpers/timeouts.ts';

let d: TestDaemon;
before(async () => {
  d = await createDaemon({ services: serviceYaml({ instances: 2 }).replace('drain_timeout: 5s', 'drain_timeout: 3s\n    ws_close_spread: 0s') });
  const r = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
});
/** Stops the running test's traffic if it failed midway (a load left running would keep the runner alive). */
let t_after: (() => Promise<void>) | null = null;
afterEach(async () => {
  await t_after?.();
  t_after = null;
});
after(async () => {
  await d?.cleanup();
});

/** The traffic of the issue: keep-alive clients, a new connection per request, 2 s requests in flight. */
function traffic(): { loads: RunningLoad[]; slow: () => { ok: number; failed: string[] }; stop: () => Promise<void> } {
  const loads = [
    startLoad({ url: d.url + '/', concurrency: 4, keepAlive: true, maxMs: 300_000 }),
    startLoad({ url: d.url + '/', concurrency: 2, keepAlive: false, maxMs: 300_000 }),
  ];
  let stopping = false;
  const slow = { ok: 0, failed: [] as string[] };
  const slowLoop = async (): Promise<void> => {
    const c = new Client(d.url, { pipelining: 1 });
    try {
      while (!stopping) {
        try {
          const r = await c.request({ method: 'GET', path: '/slow?ms=2000', headersTimeout: 30_000, bodyTimeout: 30_000 });
          const body = (await r.body.text()).trim();
          if (r.statusCode === 200 && body === 'v1') slow.ok++;
          else slow.failed.push(`status ${r.statusCode}: ${body}`);
        } catch (err) {
          slow.failed.push(String(err));
        }
      }
    } finally {
      await c.close().catch(() => {});
    }
  };
  const slowDone = Promise.all([slowLoop(), slowLoop()]);
  return {
    loads,
    slow: () => slow,
    stop: async () => {
      stopping = true;
      await slowDone;
    },
  };
}

function openSocket(): Promise<{ ws: WebSocket; closed: Promise<{ code: number; at: number }> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(d.url.replace('http', 'ws') + '/ws');
    const closed = new Promise<{ code: number; at: number }>((r) => ws.once('close', (code) => r({ code, at: Date.now() })));
    ws.on('error', () => {});
    const t = setTimeout(() => reject(new Error('no WebSocket hello within 5 s')), 5000);
    ws.once('message', (m) => {
      clearTimeout(t);
      assert.equal(String(m), 'hello v1');
      resolve({ ws, closed });
    });
  });
}

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

async function upgradeOnce(): Promise<{ oldPid: number; newPid: number; stdout: string; result: any }> {
  const before = (await d.status()).daemon.pid;
  const r = await d.cli(['upgrade', '--json'], 90_000);
  assert.equal(r.code, 0, `baton upgrade failed:\n${r.stdout}\n${r.stderr}`);
  const result = JSON.parse(r.stdout);
  assert.equal(result.oldPid, before);
  const after = (await d.status()).daemon.pid;
  assert.equal(after, result.newPid, 'the control socket answers from the new daemon');
  assert.notEqual(after, before);
  return { oldPid: before, newPid: after, stdout: r.stdout, result };
}

test('baton upgrade under load: 0 failed, same instances, WebSockets kept until the drain deadline, history continues', async () => {
  const instancePids = (await d.status('web')).services[0].instances.map((i: any) => i.pid).sort();
  const historyBefore = JSON.parse((await d.cli(['history', 'web', '--json'])).stdout).length;
  const t = traffic();
  t_after = async () => {
    await t.stop();
    await Promise.all(t.loads.map((l) => l.stop()));
  };
  await t.loads[0]!.waitFor(200, 30_000);
  const sockets = [await openSocket(), await openSocket()];
  const beforeUpgrade = Date.now();

  const { oldPid, result } = await upgradeOnce();
  assert.equal(result.webSockets, 2, 'the old daemon keeps the two open WebSockets');
  // The WebSockets stay on the old daemon, which still relays them.
  for (const s of sockets) {
    const echoed = new Promise<string>((resolve) => s.ws.once('message', (m) => resolve(String(m))));
    s.ws.send('still there');
    assert.equal(await withTimeout(echoed, 10_000, 'the echo over a WebSocket kept by the old daemon'), 'still there');
  }
  const n = t.loads[0]!.snapshot().total;
  await t.loads[0]!.waitFor(n + 200, 30_000);
  await waitUntil(`the old daemon (pid ${oldPid}) to exit after its drain deadline`, () => isGone(oldPid), 30_000, 100);
  for (const s of sockets) {
    const c = await withTimeout(s.closed, 10_000, 'the close of a WebSocket whose daemon has exited');
    assert.equal(c.code, 1001, 'closed by the old daemon with 1001 (going away)');
    assert.ok(c.at >= result.drainDeadline - 50, `closed at ${c.at}, before the drain deadline ${result.drainDeadline}`);
    assert.ok(c.at >= beforeUpgrade);
  }

  await t.stop();
  const results = await Promise.all(t.loads.map((l) => l.stop()));
  for (const r of results) {
    assert.equal(r.failed, 0, `failed requests: ${r.errors.join('; ')}`);
    assert.deepEqual(Object.keys(r.bodies), ['v1']);
  }
  assert.deepEqual(t.slow().failed, [], '2 s requests in flight during the upgrade');
  assert.ok(t.slow().ok >= 2);
  // Counters continue: the new daemon's totals include what the old one served (handed over once it drained).
  const sent = results.reduce((n, r) => n + r.total, 0) + t.slow().ok;
  const counted = (await d.status('web')).services[0].counters.requests;
  assert.ok(counted >= sent, `the service counts ${counted} requests; the clients sent ${sent} through the two daemons`);

  const after = (await d.status('web')).services[0];
  assert.deepEqual(after.instances.map((i: any) => i.pid).sort(), instancePids, 'instances re-adopted, not restarted');
  // The store's history continues, and a deploy after the upgrade works.
  const r = await d.cli(['deploy', 'web', await d.release('v2')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const history = JSON.parse((await d.cli(['history', 'web', '--json'])).stdout);
  assert.equal(history.length, historyBefore + 1);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v2');
});

test('10 upgrades in a row under load: 0 failed, no leaked fds or processes', async () => {
  const r0 = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(r0.code, 0, r0.stdout + r0.stderr);
  const instancePids = (await d.status('web')).services[0].instances.filter((i: any) => i.role === 'current').map((i: any) => i.pid).sort();
  const loads = [
    startLoad({ url: d.url + '/', concurrency: 3, keepAlive: true, maxMs: 300_000 }),
    startLoad({ url: d.url + '/', concurrency: 2, keepAlive: false, maxMs: 300_000 }),
  ];
  t_after = async () => void (await Promise.all(loads.map((l) => l.stop())));
  await loads[0]!.waitFor(100, 30_000);
  const fds: number[] = [];
  const olds: number[] = [];
  for (let i = 0; i < 10; i++) {
    const { oldPid, newPid } = await upgradeOnce();
    olds.push(oldPid);
    // The next one starts once this one finished: the old daemon gone (nothing keeps it: no WebSockets).
    await waitUntil(`old daemon ${oldPid} to exit (upgrade ${i + 1})`, () => isGone(oldPid), 30_000, 50);
    fds.push(fdCount(newPid));
    const n = loads[0]!.snapshot().total;
    await loads[0]!.waitFor(n + 50, 30_000);
  }
  const results = await Promise.all(loads.map((l) => l.stop()));
  for (const r of results) {
    assert.equal(r.failed, 0, `failed requests: ${r.errors.join('; ')}`);
    assert.deepEqual(Object.keys(r.bodies), ['v1']);
  }
  for (const pid of olds) assert.ok(isGone(pid), `old daemon ${pid} is gone`);
  const s = (await d.status('web')).services[0];
  assert.deepEqual(s.instances.filter((i: any) => i.role === 'current').map((i: any) => i.pid).sort(), instancePids);
  // fds of the serving daemon settle: the last upgrades hold no more than the third (load connections vary by a few).
  const settled = Math.max(...fds.slice(2, 4));
  for (const [i, n] of fds.entries()) if (i >= 4) assert.ok(n <= settled + 8, `fds after upgrade ${i + 1}: ${n} (after 3-4: ${fds.slice(2, 4).join(", ")}); all: ${fds.join(", ")}`);
});

test('SIGUSR2 to the daemon upgrades it as `baton upgrade` does', async () => {
  const before = (await d.status()).daemon.pid;
  const instancePids = (await d.status('web')).services[0].instances.filter((i: any) => i.role === 'current').map((i: any) => i.pid).sort();
  process.kill(before, 'SIGUSR2');
  await waitUntil('a new daemon to answer on the control socket', async () => {
    const s = await d.status().catch(() => null);
    return s !== null && s.daemon.pid !== before;
  }, 60_000, 200);
  await waitUntil(`the old daemon (pid ${before}) to exit`, () => isGone(before), 30_000, 100);
  const s = (await d.status('web')).services[0];
  assert.deepEqual(s.instances.filter((i: any) => i.role === 'current').map((i: any) => i.pid).sort(), instancePids);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v1');
});

test('the metrics, agent-check and dashboard listeners are handed over too: never refused during an upgrade', async (t) => {
  const text = await readFile(d.configFile, 'utf8');
  // A listener added to the config is bound by the next daemon: the upgrade that applies it.
  // It binds the ports itself: other ones if one was taken meanwhile (the old daemon then keeps serving).
  const [metricsPort, agentPort, dashPort] = await withFreePort(async (metrics) => {
    const [agent, dash] = [await freePort(), await freePort()];
    await writeFile(d.configFile, `metrics_listen: "127.0.0.1:${metrics}"\nagent_check: "127.0.0.1:${agent}"\ndashboard:\n  listen: "127.0.0.1:${dash}"\n${text}`);
    const first = await d.cli(['upgrade', '--json'], 90_000);
    if (first.code !== 0) throw new Error(`baton upgrade failed:\n${first.stdout}\n${first.stderr}`);
    return [metrics, agent, dash];
  });
  const failures: string[] = [];
  /** Requests on a kept-alive connection cut at the hand-over, answered on retry (per listener). */
  const cut: Record<'metrics' | 'dashboard', string[]> = { metrics: [], dashboard: [] };
  /** One GET on the pooled keep-alive connection, or on a connection of its own. */
  const get = async (port: number, path: string, fresh = false): Promise<number> => {
    const c = fresh ? new Client(`http://127.0.0.1:${port}`) : null;
    try {
      const m = c ? await c.request({ method: 'GET', path }) : await request(`http://127.0.0.1:${port}${path}`);
      await m.body.text();
      return m.statusCode;
    } finally {
      await c?.close();
    }
  };
  /**
   * The old daemon closes its idle keep-alive connections at the hand-over: a
   * request sent on one as it closes is cut, and a client retries it (as a
   * browser or a scraper does). Refused never, and the retry is answered.
   */
  const getRetried = (which: 'metrics' | 'dashboard', port: number, path: string): Promise<number> =>
    get(port, path).catch((err: unknown) => {
      const text = String((err as Error).cause ?? err);
      if (text.includes('ECONNREFUSED')) throw err;
      cut[which].push(text);
      return get(port, path, true);
    });
  let rounds = 0;
  let stop = false;
  const agent = (): Promise<string> => new Promise((resolve, reject) => {
    const s = net.connect(agentPort, '127.0.0.1');
    let out = '';
    s.on('data', (c) => (out += String(c)));
    s.on('end', () => resolve(out.trim()));
    s.on('error', reject);
  });
  const poll = (async () => {
    while (!stop) {
      rounds++;
      let what = 'metrics';
      try {
        const status = await getRetried('metrics', metricsPort, '/metrics');
        if (status !== 200) failures.push(`metrics ${status}`);
        what = 'agent-check';
        const a = await agent();
        if (!a.startsWith('ready')) failures.push(`agent-check answered ${JSON.stringify(a)}`);
        what = 'dashboard';
        const dash = await getRetried('dashboard', dashPort, '/');
        if (dash >= 500) failures.push(`dashboard ${dash}`);
      } catch (err) {
        failures.push(`${what}: ${String((err as Error).cause ?? err)}`);
      }
    }
  })();
  try {
    const { oldPid } = await upgradeOnce();
    await waitUntil(`old daemon ${oldPid} to exit`, () => isGone(oldPid), 30_000, 50);
    const after = rounds;
    await waitUntil('a few more rounds against the new daemon', () => rounds >= after + 5, 20_000);
  } finally {
    stop = true;
    await poll;
  }
  assert.deepEqual(failures, [], `over ${rounds} rounds`);
  for (const which of ['metrics', 'dashboard'] as const) {
    t.diagnostic(`${rounds} rounds; ${which} requests cut at the hand-over and answered on retry: ${cut[which].length} (${cut[which].join('; ')})`);
    assert.ok(cut[which].length <= 1, `only a ${which} request in flight at the hand-over may be cut: ${cut[which].join('; ')}`);
  }
});
