// Latency at a fixed request rate, and where the daemon's stalls come from
// (issue 13: p99 at half load). One app instance (the fixture app, started by a
// real daemon), in front of it: baton, the bare node:http + undici proxy
// (bench/undici-proxy-server.ts, "floor") and nginx (one worker) when installed;
// each target in turn, rounds interleaved, at the same open-loop rate
// (bench/openloop.ts, latency from the scheduled time). Pinned like
// bench/proxy.ts: app and proxies on CPU 0, the load generator on CPU 1.
//
// --probe: each daemon loads bench/loop-probe.mjs, which reports from inside,
// per second, the event loop's delay, the GC pauses, and every callback that
// held the loop ≥ --stall-ms; the bench prints, per run, the daemon's slowest
// loop turns and GC pauses next to the 100 ms windows in which the generator saw
// a request ≥ --stall-ms (by wall clock), so a latency spike can be matched to
// what the daemon was doing.
//
// --b-exec-argv / --b-node-options / --b-env / --b-root: a second daemon
// "baton-b" (its own instance of the app, same config) started with other V8
// flags (on the command line, after bin/baton.js's, or in NODE_OPTIONS), another
// environment (NAME=VALUE,…), or the code of another checkout (a directory with
// bin/baton.js, its dist/ built and node_modules): an A/B in the same rounds.
//
//   node bench/latency.ts [--rate 6000] [--seconds 10] [--rounds 2] [--probe] [--stall-ms 20]
//        [--targets nginx,floor,baton,baton-b] [--b-node-options=--max-semi-space-size=4]
//        [--b-exec-argv='--max-semi-space-size=4'] [--b-env BATON_X=1] [--b-root /path/to/checkout] [--no-pin]
//        [--nice=-15] [--settle 21]

import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { createDaemon, freePort, waitUntil } from '../test/helpers/daemon.ts';
import {
  BENCH_DIR, DAEMON_SEMI_SPACE, ROOT, cpuMs, daemonCode, fixtureService, fmt, hasTaskset, machineLine, mdTable, median, NCPU, nginxConfig, onCleanup, pin, pinned, registerDaemon,
  runBench, runOpenLoop, sleep, spawnGroup, writeDaemonConfig, type OpenLoopResult,
} from './lib.ts';

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '6000' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '2' },
    connections: { type: 'string', default: '50' },
    probe: { type: 'boolean', default: false },
    'stall-ms': { type: 'string', default: '20' },
    targets: { type: 'string' },
    'b-node-options': { type: 'string' },
    'b-env': { type: 'string' },
    'b-root': { type: 'string' },
    'b-exec-argv': { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    nice: { type: 'string' },
    // Seconds to wait after a daemon's run: its GC pacer's end-of-burst collection
    // (10-20 s after its traffic stops, two full collections) otherwise lands in the
    // next target's run on the same core.
    settle: { type: 'string', default: '0' },
  },
});
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const CONNS = Number(values.connections);
const STALL_MS = Number(values['stall-ms']);
const PIN = !values['no-pin'] && hasTaskset && NCPU >= 2;
const SERVER_CPU = PIN ? '0' : null;
const LOAD_CPU = PIN ? '1' : null;
const hasB = values['b-exec-argv'] !== undefined || values['b-node-options'] !== undefined || values['b-env'] !== undefined || values['b-root'] !== undefined;
const SETTLE_MS = Number(values.settle) * 1000;
const NICE = values.nice === undefined ? undefined : Number(values.nice);
const hasNginx = spawnSync('nginx', ['-v'], { stdio: 'ignore' }).error === undefined;

type Target = 'nginx' | 'floor' | 'baton' | 'baton-b';

interface ProbeLine {
  t: number;
  cpuMs: number;
  loopMaxMs: number;
  loopP99Ms: number;
  gc: Record<string, { n: number; totalMs: number; maxMs: number }>;
  longGcs: [number, number, string][];
  stalls: [number, number][];
}

function probeLines(file: string, from: number, to: number): ProbeLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as ProbeLine).filter((l) => l.t > from && l.t <= to + 1000);
}

/**
 * CPU 0's time in clock ticks, from /proc/stat: in processes (user, nice, system,
 * steal), and in interrupts (irq, softirq: mostly the loopback traffic of the
 * bench itself, which no process is charged for).
 */
function cpu0(): { busy: number; irq: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith('cpu0 '))!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return { busy: f[0]! + f[1]! + f[2]! + f[7]!, irq: f[5]! + f[6]! };
}

/** The bench's own processes pinned on CPU 0 (daemons, app instances, the floor, nginx). */
const pinnedPids: number[] = [];
const ourPids = (): number[] => pinnedPids;

/**
 * --nice N: the CPU weight of the bench's processes against everything else on
 * the machine (root only). Every process spawned in a session of its own is an
 * autogroup of its own, and the scheduler shares a CPU between autogroups; their
 * nice value is in /proc/PID/autogroup.
 */
function setNice(pid: number): void {
  if (NICE === undefined) return;
  try {
    writeFileSync(`/proc/${pid}/autogroup`, String(NICE));
  } catch (err) {
    console.log(`--nice: ${pid}: ${(err as Error).message}`);
  }
}

async function main(): Promise<boolean> {
  console.log(`# latency at a fixed rate\n\n${machineLine()}\ndaemon code: ${daemonCode()}`);
  console.log(`open loop ${RATE} req/s, ${CONNS} connections, ${SECONDS} s after 1 s warm-up, ${ROUNDS} interleaved round(s); pinning: ${PIN ? 'load generator on CPU 1, app + proxies on CPU 0' : 'none'}${NICE === undefined ? '' : `; autogroup nice ${NICE}`}${values.probe ? '; daemons probed (bench/loop-probe.mjs)' : ''}\n`);
  const baseNodeOptions = process.env['NODE_OPTIONS'] ?? '';
  const probeFiles: Partial<Record<Target, string>> = {};

  /** A daemon with one instance of the fixture app, pinned with it on the server CPU. */
  const startDaemon = async (t: 'baton' | 'baton-b'): Promise<{ url: string; pid: number; appUrl: string }> => {
    // Spawned here, not by td.start(): the daemon binds a port of its own (the harness holds its ports only for start()).
    const td = await createDaemon({ start: false, port: await freePort() });
    registerDaemon(td);
    writeDaemonConfig(td, fixtureService('web', { instances: 1 }), 'info');
    const env: NodeJS.ProcessEnv = { ...process.env };
    let nodeOptions = baseNodeOptions;
    if (values.probe) {
      probeFiles[t] = path.join(td.dir, 'loop-probe.jsonl');
      env['BATON_LOOP_PROBE_FILE'] = probeFiles[t];
      env['BATON_LOOP_PROBE_STALL_MS'] = String(STALL_MS);
      nodeOptions += ` --import=${path.join(BENCH_DIR, 'loop-probe.mjs')}`;
    }
    if (t === 'baton-b') {
      if (values['b-node-options'] !== undefined) nodeOptions += ` ${values['b-node-options']}`;
      for (const kv of (values['b-env'] ?? '').split(',').filter(Boolean)) {
        const i = kv.indexOf('=');
        env[kv.slice(0, i)] = kv.slice(i + 1);
      }
    }
    env['NODE_OPTIONS'] = nodeOptions.trim();
    const root = t === 'baton-b' && values['b-root'] !== undefined ? path.resolve(values['b-root']) : ROOT;
    // --b-exec-argv: V8 flags on the command line, where they win over bin/baton.js's own
    // (which then does not re-execute the daemon: its flags and malloc settings are given here).
    const execArgv = t === 'baton-b' && values['b-exec-argv'] !== undefined ? [DAEMON_SEMI_SPACE, '--expose-gc', ...values['b-exec-argv'].split(' ').filter(Boolean)] : [];
    if (execArgv.length > 0) Object.assign(env, { MALLOC_ARENA_MAX: '2', MALLOC_TRIM_THRESHOLD_: '131072' });
    const [cmd, args] = pinned(SERVER_CPU, process.execPath, [...execArgv, path.join(root, 'bin/baton.js'), 'daemon', '--config', td.configFile]);
    // The daemon's own output (its log goes to the state dir; V8's --trace-gc lines come here).
    const out = openSync(path.join(td.dir, 'daemon.out'), 'a');
    const d = spawnGroup(cmd, args, { cwd: td.dir, outFd: out, env });
    closeSync(out);
    console.log(`${t}: daemon pid ${d.pid}, output in ${path.join(td.dir, 'daemon.out')}`);
    onCleanup(async () => {
      await td.cli(['shutdown', '--stop-instances'], 15_000).catch(() => undefined);
    });
    await waitUntil(`the daemon (${t})`, async () => (await td.cli(['status', '--json'], 10_000)).code === 0, 20_000, 200);
    const dep = await td.cli(['deploy', 'web', await td.release('v1')]);
    if (dep.code !== 0) throw new Error(`deploy (${t}) failed: ${dep.stdout}${dep.stderr}`);
    const st = await td.status('web');
    const inst = st.services[0].instances[0];
    if (SERVER_CPU) pin(inst.pid, SERVER_CPU);
    const pid = d.pid!;
    pinnedPids.push(pid, inst.pid);
    setNice(pid);
    setNice(inst.pid);
    if (SERVER_CPU) pin(pid, SERVER_CPU); // every thread, the V8 and libuv helpers too (taskset -a)
    return { url: `${td.url}/`, pid, appUrl: `http://127.0.0.1:${inst.port}` };
  };

  const baton = await startDaemon('baton');
  const batonB = hasB ? await startDaemon('baton-b') : null;

  // The floor and nginx in front of baton's app instance.
  const [fc, fa] = pinned(SERVER_CPU, process.execPath, ['--no-deprecation', path.join(BENCH_DIR, 'undici-proxy-server.ts'), '--target', baton.appUrl]);
  const floorProc = spawnGroup(fc, fa);
  pinnedPids.push(floorProc.pid!);
  setNice(floorProc.pid!);
  const floorPort = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the floor did not start: ${out}`)), 10_000);
    floorProc.stdout!.on('data', (d) => {
      out += d;
      const m = /listening (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    floorProc.once('exit', (code) => reject(new Error(`the floor exited with ${code}`)));
  });
  let nginxUrl = '';
  if (hasNginx) {
    const dir = path.join(os.tmpdir(), `baton-latency-nginx-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    const port = await freePort();
    writeFileSync(path.join(dir, 'nginx.conf'), nginxConfig(dir, port, new URL(baton.appUrl)));
    const [c, a] = pinned(SERVER_CPU, 'nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'nginx-error.log')]);
    const ng = spawnGroup(c, a, { stdio: 'ignore' }).pid!;
    pinnedPids.push(ng);
    setNice(ng);
    nginxUrl = `http://127.0.0.1:${port}/`;
    await waitUntil('nginx answering', async () => (await fetch(nginxUrl).catch(() => null))?.status === 200, 15_000, 100);
  } else console.log('nginx: not installed (apt-get install -y nginx-light), left out');

  const urls: Record<Target, string> = { nginx: nginxUrl, floor: `http://127.0.0.1:${floorPort}/`, baton: baton.url, 'baton-b': batonB?.url ?? '' };
  const wanted = (values.targets ?? 'nginx,floor,baton,baton-b').split(',') as Target[];
  const targets = wanted.filter((t) => urls[t] !== '');
  if (batonB !== null) console.log(`baton-b: ${[values['b-exec-argv'] && `node flags ${DAEMON_SEMI_SPACE} --expose-gc ${values['b-exec-argv']}`, values['b-node-options'] && `NODE_OPTIONS ${values['b-node-options']}`, values['b-env'] && `env ${values['b-env']}`, values['b-root'] && `code of ${values['b-root']}`].filter(Boolean).join('; ')}`);

  // Warm-up (JIT, pools): 3 s at the rate, not recorded.
  for (const t of targets) await runOpenLoop(urls[t], { rate: RATE, seconds: 3, connections: CONNS, cpus: LOAD_CPU, nice: NICE });

  const runs: Record<Target, OpenLoopResult[]> = { nginx: [], floor: [], baton: [], 'baton-b': [] };
  const othersShare: Record<Target, number[]> = { nginx: [], floor: [], baton: [], 'baton-b': [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const t of targets) {
      const from = Date.now();
      const c0 = cpu0();
      const ours0 = ourPids().reduce((a, pid) => a + cpuMs(pid), 0);
      const res = await runOpenLoop(urls[t], { rate: RATE, seconds: SECONDS, connections: CONNS, cpus: LOAD_CPU, slowMs: STALL_MS, nice: NICE });
      const to = Date.now();
      const c1 = cpu0();
      const ours = ourPids().reduce((a, pid) => a + cpuMs(pid), 0) - ours0;
      // CPU 0's process time not spent by the bench's own pinned processes (another test run): ticks are 10 ms.
      const busy0 = (c1.busy - c0.busy) * 10;
      const irq0 = (c1.irq - c0.irq) * 10;
      const others = Math.max(0, busy0 - ours) / (to - from);
      runs[t].push(res);
      othersShare[t].push(others);
      console.log(`round ${r + 1} ${t.padEnd(8)} p50 ${fmt(res.p50Ms)}  p90 ${fmt(res.p90Ms)}  p99 ${fmt(res.p99Ms)}  max ${fmt(res.maxMs)} ms  achieved ${fmt(res.achievedRps, 0)}/s  errors+unfinished ${res.errors + res.non2xx + res.unfinished}  generator's longest gap ${fmt(res.generatorMaxGapMs)} ms  CPU 0: processes ${fmt((100 * busy0) / (to - from), 0)}% (others' ${fmt(100 * others, 0)}%), interrupts ${fmt((100 * irq0) / (to - from), 0)}%`);
      if ((res.slowWindows ?? []).length > 0) console.log(`    windows with a request ≥ ${STALL_MS} ms (time, slowest ms): ${res.slowWindows!.map(([w, m]) => `${new Date(w).toISOString().slice(17, 23)} ${m}`).join(', ')}`);
      for (const [other, pf] of Object.entries(probeFiles)) {
        if (other === t) continue;
        const lines = probeLines(pf, from, to);
        const longGcs = lines.flatMap((l) => l.longGcs).filter(([, ms]) => ms >= STALL_MS);
        const cpu = lines.reduce((a, l) => a + l.cpuMs, 0);
        if (longGcs.length > 0 || cpu > 100) console.log(`    meanwhile, idle ${other}: CPU ${cpu} ms${longGcs.length > 0 ? `; GC pauses ≥ ${STALL_MS} ms: ${longGcs.map(([w, m, k]) => `${new Date(w).toISOString().slice(17, 23)} ${k} ${m}`).join(', ')}` : ''}`);
      }
      const pf = probeFiles[t as 'baton' | 'baton-b'];
      if (pf !== undefined) {
        const lines = probeLines(pf, from, to);
        const gcTotal: Record<string, { n: number; totalMs: number; maxMs: number }> = {};
        for (const l of lines) {
          for (const [k, g] of Object.entries(l.gc)) {
            const a = (gcTotal[k] ??= { n: 0, totalMs: 0, maxMs: 0 });
            a.n += g.n;
            a.totalMs += g.totalMs;
            a.maxMs = Math.max(a.maxMs, g.maxMs);
          }
        }
        const stalls = lines.flatMap((l) => l.stalls);
        const longGcs = lines.flatMap((l) => l.longGcs);
        console.log(`    daemon: loop delay max ${fmt(Math.max(0, ...lines.map((l) => l.loopMaxMs)))} ms, per-second p99 median ${fmt(median(lines.map((l) => l.loopP99Ms)))} ms; CPU ${fmt(lines.reduce((a, l) => a + l.cpuMs, 0) / lines.length / 10, 0)}%; GC ${Object.entries(gcTotal).map(([k, g]) => `${k} ${g.n}× ${fmt(g.totalMs, 0)} ms (max ${fmt(g.maxMs, 1)})`).join(', ') || 'none'}`);
        if (stalls.length > 0) console.log(`    daemon stalls ≥ ${STALL_MS} ms (time, ms): ${stalls.map(([w, m]) => `${new Date(w).toISOString().slice(17, 23)} ${m}`).join(', ')}`);
        if (longGcs.length > 0) console.log(`    daemon GC pauses ≥ ${STALL_MS} ms and every full GC: ${longGcs.map(([w, m, k]) => `${new Date(w).toISOString().slice(17, 23)} ${k} ${m}`).join(', ')}`);
      }
      await sleep(t === 'baton' || t === 'baton-b' ? Math.max(500, SETTLE_MS) : 500);
    }
  }

  console.log(`\n## ${RATE} req/s, open loop, median of ${ROUNDS}\n`);
  const med = (t: Target, k: 'p50Ms' | 'p90Ms' | 'p99Ms' | 'maxMs'): number => median(runs[t].map((x) => x[k]));
  const ref = targets.includes('nginx') ? med('nginx', 'p99Ms') : NaN;
  console.log(mdTable([
    ['target', 'p50 ms', 'p90 ms', 'p99 ms', 'p99 per round', 'p99 vs nginx', 'max ms', 'errors + unfinished', "CPU 0 taken by others' processes, per round"],
    ...targets.map((t) => [
      t, fmt(med(t, 'p50Ms')), fmt(med(t, 'p90Ms')), fmt(med(t, 'p99Ms')), runs[t].map((x) => fmt(x.p99Ms, 1)).join(', '),
      Number.isFinite(ref) ? `${(med(t, 'p99Ms') / ref).toFixed(2)}x` : '-', fmt(med(t, 'maxMs')),
      runs[t].reduce((a, x) => a + x.errors + x.non2xx + x.unfinished, 0), othersShare[t].map((x) => `${fmt(100 * x, 0)}%`).join(', '),
    ]),
  ]));
  console.log(`\nload average at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  return targets.every((t) => runs[t].every((x) => x.errors + x.non2xx === 0));
}

await runBench('latency bench', 15 * 60_000, main);
