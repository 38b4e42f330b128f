// Deploy and rollback under sustained load, through a real daemon (the test
// harness: a temp dir, the real CLI, releases of test/fixtures/app.mjs,
// 2 instances, drain_timeout 5s, standby 5m so rollbacks reuse a warm standby).
//
// Two variants: keep-alive connections, and a new connection per request. In
// each: 8 clients on / with a 2 s request (/slow?ms=2000) every 400th request,
// plus 4 clients doing only /slow?ms=2000 (starts staggered), so 2 s requests
// are in flight across every switch. First a steady phase with no switch (the
// baseline), then deploy v2 / rollback / deploy v3 / rollback … back to back
// until the variant has ≥ 50,000 requests.
// A request fails on no response, a 5xx, or a body that is not a deployed version.
// Latency of the fast requests (/) overlapping each operation is compared with
// the steady phase: a switch that makes requests wait shows there.
//
//   node bench/deploy.ts [--quick] [--requests N] [--variant keepalive|close]

import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { createDaemon, type TestDaemon } from '../test/helpers/daemon.ts';
import { cliOperation, fmt, machineLine, mdTable, median, QUICK, ratio, registerDaemon, runBench, sleep, verdict } from './lib.ts';
import { latencyIn, startTimedLoad, type RequestRecord } from './timed-load.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    requests: { type: 'string' },
    variant: { type: 'string' },
    clients: { type: 'string', default: '8' },
    'slow-clients': { type: 'string', default: '4' },
  },
});
const TARGET_REQUESTS = Number(values.requests ?? (QUICK ? 5000 : 50_000));
const CLIENTS = Number(values.clients);
const SLOW_CLIENTS = Number(values['slow-clients']);
const SLOW = '/slow?ms=2000';
const SLOW_EVERY = 400;
const STEADY_MS = QUICK ? 3000 : 8000;
const MAX_LOAD_MS = 8 * 60_000; // per variant: a bound even if the daemon is very slow
const MAX_SWITCHES = 400;
const isFast = (r: RequestRecord): boolean => r.path === '/';

interface Op {
  n: number;
  kind: string;
  from: string | null;
  to: string | null;
  state: string;
  switchAfterMs: number | null;
  durationMs: number | null;
  wallMs: number;
  requests: number;
  failed: number;
  retries: number;
  fastP99: number;
  fastMax: number;
}

interface VariantResult {
  name: string;
  total: number;
  failed: number;
  steady: { rps: number; p50: number; p99: number; max: number };
  switching: { rps: number; p50: number; p99: number; max: number };
  ops: Op[];
  daemon: { requests: number; failed: number; retries: number };
  errors: string[];
  statuses: Record<string, number>;
  slowDone: number;
  genLoopMaxMs: number;
  daemonProblems: string[];
}

async function counters(td: TestDaemon): Promise<{ requests: number; failed: number; retries: number }> {
  const s = await td.status('web');
  const c = s.services[0].counters;
  return { requests: c.requests, failed: c.failed, retries: c.retries };
}

async function variant(name: string, keepAlive: boolean): Promise<VariantResult> {
  console.log(`\n## ${name}\n`);
  const td = await createDaemon();
  registerDaemon(td);
  const versions = new Set<string>();
  const mk = async (v: string): Promise<string> => {
    versions.add(v);
    return td.release(v);
  };
  const first = await cliOperation(td, ['deploy', 'web', await mk('v1')]);
  if (first.outcome?.state !== 'done') throw new Error(`initial deploy failed:\n${first.output}`);

  const c0 = await counters(td);
  const common = { origin: td.url, keepAlive, maxMs: MAX_LOAD_MS, expectBody: (b: string) => versions.has(b) };
  // Starts staggered so that the clients' periodic 2 s requests do not line up.
  const fast = startTimedLoad({ ...common, clients: CLIENTS, path: (n) => (n % SLOW_EVERY === 0 ? SLOW : '/'), startDelayMs: (i) => i * 250 });
  const slow = startTimedLoad({ ...common, clients: SLOW_CLIENTS, path: () => SLOW, startDelayMs: (i) => i * 500 });
  const total = (): number => fast.total() + slow.total();
  let stopped = false;
  const stopLoads = async (): Promise<void> => {
    stopped = true;
    await Promise.all([fast.stop(), slow.stop()]);
  };
  const ops: Op[] = [];
  const eld = monitorEventLoopDelay({ resolution: 10 });
  let steadyWin = [0, 0];
  let switchWin = [0, 0];
  try {
    await sleep(Math.max(CLIENTS * 250, SLOW_CLIENTS * 500) + 1000);
    // Baseline: the same load with no switch.
    const s0 = total();
    steadyWin = [performance.now(), 0];
    await sleep(STEADY_MS);
    steadyWin[1] = performance.now();
    const steadyN = total() - s0;
    console.log(`steady (no switch): ${fmt((steadyN * 1000) / (steadyWin[1]! - steadyWin[0]!), 0)} req/s`);

    eld.enable();
    switchWin = [performance.now(), 0];
    let next = 2;
    // At least one deploy and one rollback, even when the warm-up and the steady phase reached the target (--quick).
    while ((total() < TARGET_REQUESTS || ops.length < 2) && ops.length < MAX_SWITCHES) {
      const rollback = ops.length % 2 === 1;
      const args = rollback ? ['rollback', 'web'] : ['deploy', 'web', await mk(`v${next++}`)];
      const t0 = performance.now();
      const o = await cliOperation(td, args);
      const lat = latencyIn(fast.records, t0, performance.now(), isFast);
      const oc = o.outcome;
      const op: Op = {
        n: ops.length + 1,
        kind: rollback ? 'rollback' : 'deploy',
        from: oc?.fromRelease ?? null,
        to: oc?.toRelease ?? null,
        state: oc?.state ?? `no outcome (exit ${o.code})`,
        switchAfterMs: oc?.switchAfterMs ?? null,
        durationMs: oc?.durationMs ?? null,
        wallMs: o.wallMs,
        requests: oc?.requests ?? 0,
        failed: oc?.failed ?? 0,
        retries: oc?.retries ?? 0,
        fastP99: lat.p99,
        fastMax: lat.max,
      };
      ops.push(op);
      console.log(`  #${String(op.n).padStart(2)} ${op.kind.padEnd(8)} ${op.from} -> ${op.to}: ${op.state}, switch at ${op.switchAfterMs} ms, done in ${op.durationMs} ms; / latency p99 ${fmt(op.fastP99, 1)} max ${fmt(op.fastMax, 1)} ms; load so far ${total()} requests, ${fast.failed() + slow.failed()} failed`);
      if (op.state !== 'done') {
        console.log(o.output.split('\n').slice(-15).join('\n'));
        break;
      }
    }
    switchWin[1] = performance.now();
    await stopLoads();
  } finally {
    eld.disable();
    if (!stopped) await stopLoads().catch(() => undefined);
  }
  const c1 = await counters(td);
  const log = await td.daemonLog();
  const daemonProblems = log.split('\n').filter((l) => /"level":"(warn|error)"/.test(l)).slice(0, 10);
  const all = [...fast.records, ...slow.records];
  const inWin = (w: number[]): number => all.filter((r) => r.end >= w[0]! && r.end <= w[1]!).length;
  const stats = (w: number[]): VariantResult['steady'] => ({ rps: (inWin(w) * 1000) / (w[1]! - w[0]!), ...latencyIn(fast.records, w[0]!, w[1]!, isFast) });
  const statuses = { ...fast.statuses };
  for (const [k, v] of Object.entries(slow.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  return {
    name,
    total: total(),
    failed: fast.failed() + slow.failed(),
    steady: stats(steadyWin),
    switching: stats(switchWin),
    ops,
    daemon: { requests: c1.requests - c0.requests, failed: c1.failed - c0.failed, retries: c1.retries - c0.retries },
    errors: [...fast.errors, ...slow.errors],
    statuses,
    slowDone: all.filter((r) => r.path === SLOW && r.ok).length,
    genLoopMaxMs: eld.max / 1e6,
    daemonProblems,
  };
}

function summary(v: VariantResult): void {
  console.log('');
  console.log(mdTable([
    ['#', 'op', 'from → to', 'state', 'switch after ms', 'total ms', 'CLI wall ms', 'requests', 'failed', 'retries', '/ p99 ms', '/ max ms'],
    ...v.ops.map((o) => [o.n, o.kind, `${o.from} → ${o.to}`, o.state, o.switchAfterMs ?? '-', o.durationMs ?? '-', fmt(o.wallMs, 0), o.requests, o.failed, o.retries, fmt(o.fastP99, 1), fmt(o.fastMax, 1)]),
  ]));
  const by = (k: string, f: (o: Op) => number | null): string => {
    const xs = v.ops.filter((o) => o.kind === k).map(f).filter((x): x is number => x !== null);
    return xs.length ? `${Math.min(...xs)} / ${median(xs)} / ${Math.max(...xs)}` : '-';
  };
  console.log('');
  console.log(mdTable([
    ['', 'deploy', 'rollback'],
    ['switches', v.ops.filter((o) => o.kind === 'deploy').length, v.ops.filter((o) => o.kind === 'rollback').length],
    ['switch after ms (min / median / max)', by('deploy', (o) => o.switchAfterMs), by('rollback', (o) => o.switchAfterMs)],
    ['total ms (min / median / max)', by('deploy', (o) => o.durationMs), by('rollback', (o) => o.durationMs)],
  ]));
  console.log('');
  console.log(mdTable([
    ['phase', 'req/s', 'GET / p50 ms', 'GET / p99 ms', 'GET / max ms'],
    ['steady (baseline)', fmt(v.steady.rps, 0), fmt(v.steady.p50, 1), fmt(v.steady.p99, 1), fmt(v.steady.max, 1)],
    ['while switching', fmt(v.switching.rps, 0), fmt(v.switching.p50, 1), fmt(v.switching.p99, 1), fmt(v.switching.max, 1)],
    ['ratio', ratio(v.switching.rps, v.steady.rps), ratio(v.switching.p50, v.steady.p50), ratio(v.switching.p99, v.steady.p99), ratio(v.switching.max, v.steady.max)],
  ]));
  console.log(`\nrequests: ${v.total} (${v.slowDone} of them 2 s requests), failed: ${v.failed}, switches: ${v.ops.length}; statuses ${JSON.stringify(v.statuses)}`);
  console.log(`daemon counted: ${v.daemon.requests} requests, ${v.daemon.failed} failed, ${v.daemon.retries} retries`);
  console.log(`load generator's own worst event-loop delay while switching: ${fmt(v.genLoopMaxMs, 0)} ms`);
  if (v.errors.length) console.log(`first failures:\n  ${v.errors.slice(0, 10).join('\n  ')}`);
  if (v.daemonProblems.length) console.log(`daemon warnings/errors (first 10):\n  ${v.daemonProblems.join('\n  ')}`);
}

async function main(): Promise<boolean> {
  console.log(`# deploy and rollback under load\n\n${machineLine()}`);
  console.log(`${CLIENTS} clients on / (every ${SLOW_EVERY}th request ${SLOW}) + ${SLOW_CLIENTS} clients on ${SLOW}; until ≥ ${TARGET_REQUESTS} requests per variant`);
  const variants: [string, boolean][] = [['keep-alive', true], ['new connection per request', false]];
  const chosen = values.variant ? variants.filter(([, ka]) => (values.variant === 'close' ? !ka : ka)) : variants;
  const results: VariantResult[] = [];
  for (const [name, ka] of chosen) {
    const v = await variant(name, ka);
    summary(v);
    results.push(v);
  }
  const pass = (v: VariantResult): boolean => v.failed === 0 && v.total >= TARGET_REQUESTS && v.ops.length > 0 && v.ops.every((o) => o.state === 'done');
  console.log('\n## Deploy summary\n');
  console.log(mdTable([
    ['variant', 'requests', 'failed', 'switches', 'median switch after ms (deploy / rollback)', 'median total ms (deploy / rollback)', 'daemon retries', 'req/s switching vs steady', 'GET / p99 switching vs steady', 'verdict (0 failed)'],
    ...results.map((v) => {
      const med = (k: string, f: (o: Op) => number | null): string => fmt(median(v.ops.filter((o) => o.kind === k).map(f).filter((x): x is number => x !== null)), 0);
      return [v.name, v.total, v.failed, v.ops.length, `${med('deploy', (o) => o.switchAfterMs)} / ${med('rollback', (o) => o.switchAfterMs)}`,
        `${med('deploy', (o) => o.durationMs)} / ${med('rollback', (o) => o.durationMs)}`, v.daemon.retries, ratio(v.switching.rps, v.steady.rps),
        `${fmt(v.switching.p99, 1)} vs ${fmt(v.steady.p99, 1)} ms (${ratio(v.switching.p99, v.steady.p99)})`, verdict(pass(v))];
    }),
  ]));
  return results.every(pass);
}

await runBench('deploy bench', (QUICK ? 5 : 20) * 60_000, main);
