// Deploy and rollback under sustained load, through a real daemon (the test
// harness: a temp dir, the real CLI, releases of test/fixtures/app.mjs,
// 2 instances, drain_timeout 5s, standby 5m so rollbacks reuse a warm standby).
//
// Two variants: keep-alive connections, and a new connection per request. In
// each: 8 clients on / with a 2 s request (/slow?ms=2000) every 400th request,
// plus 4 clients doing only /slow?ms=2000, so 2 s requests are always in flight
// across every switch. First a steady phase with no switch (the baseline for
// the throughput ratio), then deploy v2 / rollback / deploy v3 / rollback …
// back to back until the variant has ≥ 50,000 requests.
// A request fails on no response, a 5xx, or a body that is not a deployed version.
//
//   node bench/deploy.ts [--quick] [--requests N] [--variant keepalive|close]

import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { createDaemon, type TestDaemon } from '../test/helpers/daemon.ts';
import { startLoad, type LoadResult } from '../test/helpers/load.ts';
import { cliOperation, fmt, machineLine, mdTable, median, QUICK, ratio, registerDaemon, runBench, sleep, verdict } from './lib.ts';

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
const STEADY_MS = QUICK ? 2000 : 5000;
const MAX_LOAD_MS = 8 * 60_000; // per variant: a bound even if the daemon is very slow
const MAX_SWITCHES = 400;
const PERIODS = [397, 401, 409, 419, 421, 431, 433, 439, 443, 449, 457, 461, 463, 467, 479, 487];

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
  /** Longest time without a single completed request on the fast clients while the operation ran (50 ms resolution). */
  maxStallMs: number;
  /** The load generator's own worst event-loop delay during the operation (its share of any stall). */
  genLoopMaxMs: number;
}

interface VariantResult {
  name: string;
  total: number;
  failed: number;
  badBodies: number;
  steadyRps: number;
  switchingRps: number;
  ops: Op[];
  daemon: { requests: number; failed: number; retries: number };
  errors: string[];
  statuses: Record<string, number>;
  daemonProblems: string[];
}

function merge(a: LoadResult, b: LoadResult): LoadResult {
  const bodies = { ...a.bodies };
  for (const [k, v] of Object.entries(b.bodies)) bodies[k] = (bodies[k] ?? 0) + v;
  const statuses = { ...a.statuses };
  for (const [k, v] of Object.entries(b.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  return {
    total: a.total + b.total, ok: a.ok + b.ok, failed: a.failed + b.failed, bodies, statuses,
    errors: [...a.errors, ...b.errors], sequences: [...a.sequences, ...b.sequences], durationMs: Math.max(a.durationMs, b.durationMs),
  };
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
  const dirs: string[] = [];
  const mk = async (v: string): Promise<string> => {
    versions.add(v);
    const d = await td.release(v);
    dirs.push(d);
    return d;
  };
  const first = await cliOperation(td, ['deploy', 'web', await mk('v1')]);
  if (first.outcome?.state !== 'done') throw new Error(`initial deploy failed:\n${first.output}`);

  const c0 = await counters(td);
  const common = { keepAlive, maxMs: MAX_LOAD_MS };
  // One load per fast client, each with its own period for the 2 s request (primes
  // near 400), so the clients do not all sit in a slow request at the same moment.
  const fast = Array.from({ length: CLIENTS }, (_, i) =>
    startLoad({ ...common, url: `${td.url}/`, concurrency: 1, mix: [{ path: '/slow?ms=2000', every: PERIODS[i % PERIODS.length]! }] }));
  const slow = startLoad({ ...common, url: `${td.url}/slow?ms=2000`, concurrency: SLOW_CLIENTS });
  const fastTotal = (): number => fast.reduce((a, l) => a + l.snapshot().total, 0);
  const total = (): number => fastTotal() + slow.snapshot().total;
  const failedSoFar = (): number => fast.reduce((a, l) => a + l.snapshot().failed, 0) + slow.snapshot().failed;
  let stopped = false;
  const stopLoads = async (): Promise<LoadResult> => {
    stopped = true;
    let r = await slow.stop();
    for (const l of fast) r = merge(r, await l.stop());
    return r;
  };
  const ops: Op[] = [];
  let r: LoadResult;
  let steadyRps = NaN;
  let switchingRps = NaN;
  // Stall sampler: the time of the last completion seen, checked every 50 ms.
  let lastTotal = 0;
  let lastChange = performance.now();
  let stall = 0;
  const sampler = setInterval(() => {
    const n = fastTotal();
    const now = performance.now();
    if (n !== lastTotal) {
      lastTotal = n;
      lastChange = now;
    } else stall = Math.max(stall, now - lastChange);
  }, 50);
  try {
    await fast[0]!.waitFor(50, 20_000);
    // Baseline: the same load with no switch.
    const s0 = total();
    const t0 = performance.now();
    await sleep(STEADY_MS);
    steadyRps = ((total() - s0) * 1000) / (performance.now() - t0);
    console.log(`steady (no switch): ${fmt(steadyRps, 0)} req/s`);

    const sw0 = total();
    const tsw = performance.now();
    let next = 2;
    while (total() < TARGET_REQUESTS && ops.length < MAX_SWITCHES) {
      const rollback = ops.length % 2 === 1;
      const args = rollback ? ['rollback', 'web'] : ['deploy', 'web', await mk(`v${next++}`)];
      stall = 0;
      lastChange = performance.now();
      const eld = monitorEventLoopDelay({ resolution: 10 });
      eld.enable();
      const o = await cliOperation(td, args);
      eld.disable();
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
        maxStallMs: Math.round(stall),
        genLoopMaxMs: Math.round(eld.max / 1e6),
      };
      ops.push(op);
      console.log(`  #${String(op.n).padStart(2)} ${op.kind.padEnd(8)} ${op.from} -> ${op.to}: ${op.state}, switch at ${op.switchAfterMs} ms, done in ${op.durationMs} ms, longest stall ${op.maxStallMs} ms (generator loop delay max ${op.genLoopMaxMs} ms); load so far ${total()} requests`);
      if (op.state !== 'done') {
        console.log(o.output.split('\n').slice(-15).join('\n'));
        break;
      }
      if (failedSoFar() > 0 && ops.length >= 2 && QUICK) break;
    }
    switchingRps = ((total() - sw0) * 1000) / (performance.now() - tsw);
    r = await stopLoads();
  } finally {
    clearInterval(sampler);
    if (!stopped) await stopLoads().catch(() => undefined);
  }
  const c1 = await counters(td);
  const badBodies = Object.entries(r.bodies).filter(([b]) => !versions.has(b)).reduce((a, [, n]) => a + n, 0);
  const log = await td.daemonLog();
  const daemonProblems = log.split('\n').filter((l) => /"level":"(warn|error)"/.test(l)).slice(0, 10);
  return {
    name,
    total: r.total,
    failed: r.failed + badBodies,
    badBodies,
    steadyRps,
    switchingRps,
    ops,
    daemon: { requests: c1.requests - c0.requests, failed: c1.failed - c0.failed, retries: c1.retries - c0.retries },
    errors: r.errors,
    statuses: r.statuses,
    daemonProblems,
  };
}

function summary(v: VariantResult): void {
  console.log('');
  console.log(mdTable([
    ['#', 'op', 'from → to', 'state', 'switch after ms', 'total ms', 'CLI wall ms', 'requests', 'failed', 'retries', 'longest stall ms', 'generator loop max ms'],
    ...v.ops.map((o) => [o.n, o.kind, `${o.from} → ${o.to}`, o.state, o.switchAfterMs ?? '-', o.durationMs ?? '-', fmt(o.wallMs, 0), o.requests, o.failed, o.retries, o.maxStallMs, o.genLoopMaxMs]),
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
    ['total deploy ms (min / median / max)', by('deploy', (o) => o.durationMs), by('rollback', (o) => o.durationMs)],
  ]));
  console.log(`\nrequests: ${v.total}, failed: ${v.failed}${v.badBodies ? ` (${v.badBodies} with an unexpected body)` : ''}, switches: ${v.ops.length}; statuses ${JSON.stringify(v.statuses)}`);
  console.log(`daemon counted: ${v.daemon.requests} requests, ${v.daemon.failed} failed, ${v.daemon.retries} retries`);
  console.log(`throughput: steady ${fmt(v.steadyRps, 0)} req/s, while switching ${fmt(v.switchingRps, 0)} req/s (${ratio(v.switchingRps, v.steadyRps)} of steady)`);
  if (v.errors.length) console.log(`first failures:\n  ${v.errors.slice(0, 10).join('\n  ')}`);
  if (v.daemonProblems.length) console.log(`daemon warnings/errors (first 10):\n  ${v.daemonProblems.join('\n  ')}`);
}

async function main(): Promise<boolean> {
  console.log(`# deploy and rollback under load\n\n${machineLine()}`);
  console.log(`${CLIENTS} clients on / (every 400th request /slow?ms=2000) + ${SLOW_CLIENTS} clients on /slow?ms=2000; until ≥ ${TARGET_REQUESTS} requests per variant`);
  const variants: [string, boolean][] = [['keep-alive', true], ['new connection per request', false]];
  const chosen = values.variant ? variants.filter(([, ka]) => (values.variant === 'close' ? !ka : ka)) : variants;
  const results: VariantResult[] = [];
  for (const [name, ka] of chosen) {
    const v = await variant(name, ka);
    summary(v);
    results.push(v);
  }
  console.log('\n## Deploy summary\n');
  console.log(mdTable([
    ['variant', 'requests', 'failed', 'switches', 'median switch after ms (deploy / rollback)', 'median total ms (deploy / rollback)', 'daemon retries', 'switching / steady req/s', 'verdict'],
    ...results.map((v) => {
      const med = (k: string, f: (o: Op) => number | null): string => fmt(median(v.ops.filter((o) => o.kind === k).map(f).filter((x): x is number => x !== null)), 0);
      const ok = v.failed === 0 && v.total >= TARGET_REQUESTS && v.ops.every((o) => o.state === 'done');
      return [v.name, v.total, v.failed, v.ops.length, `${med('deploy', (o) => o.switchAfterMs)} / ${med('rollback', (o) => o.switchAfterMs)}`,
        `${med('deploy', (o) => o.durationMs)} / ${med('rollback', (o) => o.durationMs)}`, v.daemon.retries, ratio(v.switchingRps, v.steadyRps), verdict(ok)];
    }),
  ]));
  return results.every((v) => v.failed === 0 && v.total >= TARGET_REQUESTS && v.ops.every((o) => o.state === 'done'));
}

await runBench('deploy bench', (QUICK ? 5 : 20) * 60_000, main);
