// Proxy overhead, all in one run against ONE app process (the fixture app,
// started by a real baton daemon as its single instance):
//   (a) direct to the app's port,
//   (b) through baton,
//   (c) through a minimal `http-proxy` server (keep-alive http.Agent),
//   (d) "undici-floor": the smallest proxy on baton's own parts (node:http
//       server + undici Pool dispatch, no baton logic), to tell the cost of
//       baton's logic from the cost of the stack it is built on,
//   (e) "baton-v8-young": a second daemon (same config, its own instance) with
//       V8's default young generation instead of the 4 MB semi-space that
//       bin/baton.js sets: an A/B of that memory setting.
// Throughput: wrk -t1 -c50 -d10s --latency, rounds interleaved a,b,c,a,b,c…,
// median per target. Then p99 at half load: each target at 50% of the direct
// max rate, of baton's and (issue 13's measure) of nginx's, with an open-loop
// client (bench/openloop.ts), 50 connections.
//
// Pinning (2+ CPUs, taskset): the load generator runs on CPU 1; the app, the
// daemon and the http-proxy server all share CPU 0. So "direct" gets one core
// for the app alone, and a proxy's cost shows as CPU taken from the app.
//
//   (f) with --workers N (N > 1): "baton-workers", a third daemon with
//       `proxy.workers: N` (its own instance): the proxy CPU counted is the
//       daemon's and its workers' together.
//   (g) "nginx" (one worker process, upstream keep-alive) and "haproxy" (one
//       thread, http-reuse always) in front of the same app, when installed
//       (`apt-get install -y nginx-light haproxy`): issue 13's peers. Both add
//       the four forwarding fields baton sends (BATON_BENCH_PEER_XFF_ONLY=1:
//       X-Forwarded-For alone, as before bench/RESULTS.md section 22).
//
//   node bench/proxy.ts [--quick] [--rounds N] [--seconds S] [--no-pin] [--workers N]
// Needs wrk: apt-get update && apt-get install -y wrk

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createDaemon, freePort, waitUntil } from '../test/helpers/daemon.ts';
import {
  BENCH_DIR, DAEMON_SEMI_SPACE, QUICK, ROOT, WRK_MISSING, cpuMs, fixtureService, onCleanup, fmt, hasWrk, machineLine, mdTable, median, nginxConfig, PEER_XFF_ONLY, pin, pinned, ratio,
  registerDaemon, wrkBenchOptions, runBench, runOpenLoop, runWrk, sleep, spawnGroup, verdict, writeDaemonConfig, type OpenLoopResult, type WrkResult,
} from './lib.ts';

const { ROUNDS, SECONDS, CONNS, PIN, SERVER_CPU, LOAD_CPU, WORKERS } = wrkBenchOptions();

type Target = 'direct' | 'baton' | 'baton-v8-young' | 'http-proxy' | 'undici-floor' | 'baton-workers' | 'nginx' | 'haproxy';

const hasNginx = spawnSync('nginx', ['-v'], { stdio: 'ignore' }).error === undefined;
const hasHaproxy = spawnSync('haproxy', ['-v'], { stdio: 'ignore' }).error === undefined;

/** HAProxy, one thread, reusing server connections. */
function haproxyConfig(port: number, app: URL): string {
  return `global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
  option forwardfor
frontend fe
  bind 127.0.0.1:${port}
${PEER_XFF_ONLY ? '' : `  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header Forwarded "for=%[src];host=\\"%[req.hdr(host)]\\";proto=http"
`}  default_backend be
backend be
  server app ${app.host}
`;
}

/** The V8 flags on a process's command line. */
function v8Flags(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a.startsWith('--max-semi')).join(' ') || '(none)';
  } catch {
    return '?';
  }
}

async function main(): Promise<boolean> {
  console.log(`# proxy overhead\n\n${machineLine()}`);
  if (!hasWrk) {
    console.error(`\nproxy bench: ${WRK_MISSING}`);
    return false;
  }
  console.log(`wrk -t1 -c${CONNS} -d${SECONDS}s --latency, ${ROUNDS} interleaved round(s); pinning: ${PIN ? 'load generator on CPU 1, app + proxies on CPU 0' : 'none'}\n`);

  // One daemon, one instance of the fixture app.
  const td = await createDaemon({ start: false });
  registerDaemon(td);
  writeDaemonConfig(td, fixtureService('web', { instances: 1 }), 'info');
  await td.start();
  if (SERVER_CPU) pin(td.proc.pid!, SERVER_CPU); // before the deploy: the instance inherits it
  const dep = await td.cli(['deploy', 'web', await td.release('v1')]);
  if (dep.code !== 0) throw new Error(`deploy failed: ${dep.stdout}${dep.stderr}`);
  const st = await td.status('web');
  const inst = st.services[0].instances[0];
  if (SERVER_CPU) pin(inst.pid, SERVER_CPU);
  const appUrl = `http://127.0.0.1:${inst.port}/`;

  const startChild = async (script: string): Promise<{ port: number; pid: number }> => {
    const [cmd, args] = pinned(SERVER_CPU, process.execPath, ['--no-deprecation', path.join(BENCH_DIR, script), '--target', appUrl.slice(0, -1)]);
    const c = spawnGroup(cmd, args);
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new Error(`${script} did not start: ${out}`)), 10_000);
      c.stdout!.on('data', (d) => {
        out += d;
        const m = /listening (\d+)/.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(Number(m[1]));
        }
      });
      c.stderr!.on('data', (d) => process.stderr.write(d));
      c.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
    });
    return { port, pid: c.pid! };
  };
  const hp = await startChild('http-proxy-server.ts');
  const floor = await startChild('undici-proxy-server.ts');


  // The same daemon with V8's default young generation, for an A/B of the 4 MB
  // semi-space bin/baton.js sets: started by hand with the flag given twice
  // (bin/baton.js does not re-execute a process that has it; V8 takes the last
  // value, 0 = V8's default).
  // Spawned here, not by td.start(): the daemon binds a port of its own (the harness holds its ports only for start()).
  const td2 = await createDaemon({ start: false, port: await freePort() });
  registerDaemon(td2);
  writeDaemonConfig(td2, fixtureService('web', { instances: 1 }), 'info');
  // BATON_BENCH_B_SEMI=N (MB): another size for this second daemon instead of V8's default.
  // BATON_BENCH_B_ROOT=DIR: it runs that checkout's code (built), for a before/after of code in one run
  // (with BATON_BENCH_B_SEMI=4 both daemons have the same flags).
  const bRoot = path.resolve(process.env['BATON_BENCH_B_ROOT'] ?? ROOT);
  if (bRoot !== ROOT) console.log(`baton-v8-young runs the code of ${bRoot}`);
  const d2 = spawnGroup(process.execPath, [DAEMON_SEMI_SPACE, `--max-semi-space-size=${Number(process.env['BATON_BENCH_B_SEMI'] ?? 0)}`, path.join(bRoot, 'bin/baton.js'), 'daemon', '--config', td2.configFile], { cwd: td2.dir, stdio: 'ignore' });
  onCleanup(async () => {
    await td2.cli(['shutdown', '--stop-instances'], 15_000).catch(() => undefined);
  });
  await waitUntil('the second daemon', async () => (await td2.cli(['status', '--json'], 10_000)).code === 0, 20_000, 200);
  if (SERVER_CPU) pin(d2.pid!, SERVER_CPU);
  const dep2 = await td2.cli(['deploy', 'web', await td2.release('v1')]);
  if (dep2.code !== 0) throw new Error(`deploy (second daemon) failed: ${dep2.stdout}${dep2.stderr}`);
  const inst2 = (await td2.status('web')).services[0].instances[0];
  if (SERVER_CPU) pin(inst2.pid, SERVER_CPU);
  console.log(`daemon V8 flags: baton ${v8Flags(td.proc.pid!)}; baton-v8-young ${v8Flags(d2.pid!)}`);

  // proxy.workers: N — the daemon (control plane) and its N worker processes.
  let workersUrl = '';
  let workersPids: number[] = [];
  let inst3Pid = 0;
  let td3: Awaited<ReturnType<typeof createDaemon>> | null = null;
  if (WORKERS > 1) {
    td3 = await createDaemon({ start: false });
    registerDaemon(td3);
    writeDaemonConfig(td3, fixtureService('web', { instances: 1 }), 'info', [`proxy: { workers: ${WORKERS} }`]);
    await td3.start();
    const dep3 = await td3.cli(['deploy', 'web', await td3.release('v1')]);
    if (dep3.code !== 0) throw new Error(`deploy (workers daemon) failed: ${dep3.stdout}${dep3.stderr}`);
    const st3 = await td3.status('web');
    inst3Pid = st3.services[0].instances[0].pid;
    workersPids = [td3.proc.pid!, ...(st3.daemon.proxyWorkers as { pid: number }[]).map((w) => w.pid)];
    if (SERVER_CPU) for (const pid of [...workersPids, inst3Pid]) pin(pid, SERVER_CPU);
    workersUrl = `${td3.url}/`;
    console.log(`baton-workers: proxy.workers ${WORKERS}, daemon and worker pids ${workersPids.join(', ')}`);
  }

  // The peers of issue 13, in front of the same app instance, pinned like the proxies.
  const peerDir = path.join(td.dir, 'peers');
  mkdirSync(peerDir, { recursive: true });
  const startPeer = async (name: string, cmd: string, args: string[], port: number): Promise<{ url: string; pid: number }> => {
    const [c, a] = pinned(SERVER_CPU, cmd, args);
    const p = spawnGroup(c, a, { stdio: 'ignore' });
    const url = `http://127.0.0.1:${port}/`;
    await waitUntil(`${name} answering on ${port}`, async () => (await fetch(url).catch(() => null))?.status === 200, 15_000, 100);
    return { url, pid: p.pid! };
  };
  let nginx: { url: string; pid: number } | null = null;
  let haproxy: { url: string; pid: number } | null = null;
  if (hasNginx) {
    const port = await freePort();
    writeFileSync(path.join(peerDir, 'nginx.conf'), nginxConfig(peerDir, port, new URL(appUrl)));
    nginx = await startPeer('nginx', 'nginx', ['-p', peerDir, '-c', path.join(peerDir, 'nginx.conf'), '-e', path.join(peerDir, 'nginx-error.log')], port);
  } else console.log('nginx: not installed (apt-get install -y nginx-light), left out');
  if (hasHaproxy) {
    const port = await freePort();
    writeFileSync(path.join(peerDir, 'haproxy.cfg'), haproxyConfig(port, new URL(appUrl)));
    haproxy = await startPeer('haproxy', 'haproxy', ['-db', '-f', path.join(peerDir, 'haproxy.cfg')], port);
  } else console.log('haproxy: not installed (apt-get install -y haproxy), left out');

  const urls: Record<Target, string> = { direct: appUrl, baton: `${td.url}/`, 'baton-v8-young': `${td2.url}/`, 'http-proxy': `http://127.0.0.1:${hp.port}/`, 'undici-floor': `http://127.0.0.1:${floor.port}/`, 'baton-workers': workersUrl, nginx: nginx?.url ?? '', haproxy: haproxy?.url ?? '' };
  const proxyPids: Record<Target, number[]> = { direct: [], baton: [td.proc.pid!], 'baton-v8-young': [d2.pid!], 'http-proxy': [hp.pid], 'undici-floor': [floor.pid], 'baton-workers': workersPids, nginx: nginx === null ? [] : [nginx.pid], haproxy: haproxy === null ? [] : [haproxy.pid] };
  const appPid = (t: Target): number => (t === 'baton-v8-young' ? inst2.pid : t === 'baton-workers' ? inst3Pid : inst.pid);
  const targets: Target[] = [
    'direct', 'baton', 'baton-v8-young', 'http-proxy', 'undici-floor',
    ...(WORKERS > 1 ? (['baton-workers'] as const) : []),
    ...(nginx !== null ? (['nginx'] as const) : []),
    ...(haproxy !== null ? (['haproxy'] as const) : []),
  ];
  for (const t of targets) {
    const body = await (await fetch(urls[t])).text();
    if (body.trim() !== 'v1') throw new Error(`${t} answered ${JSON.stringify(body)}`);
  }

  // Warm-up (JIT, pools), not recorded.
  for (const t of targets) await runWrk(urls[t], { connections: CONNS, seconds: 2, cpus: LOAD_CPU });

  const runs: Record<Target, (WrkResult & { proxyCpuUsPerReq: number; appCpuUsPerReq: number })[]> = { direct: [], baton: [], 'baton-v8-young': [], 'http-proxy': [], 'undici-floor': [], 'baton-workers': [], nginx: [], haproxy: [] };
  const proxyCpu = (t: Target): number => proxyPids[t].reduce((n, pid) => n + cpuMs(pid), 0);
  for (let r = 0; r < ROUNDS; r++) {
    for (const t of targets) {
      const p0 = proxyCpu(t);
      const a0 = cpuMs(appPid(t));
      const w = await runWrk(urls[t], { connections: CONNS, seconds: SECONDS, cpus: LOAD_CPU });
      const proxyCpuUsPerReq = proxyPids[t].length === 0 ? 0 : ((proxyCpu(t) - p0) * 1000) / w.requests;
      const appCpuUsPerReq = ((cpuMs(appPid(t)) - a0) * 1000) / w.requests;
      runs[t].push({ ...w, proxyCpuUsPerReq, appCpuUsPerReq });
      console.log(`  round ${r + 1} ${t.padEnd(10)} ${fmt(w.rps, 0).padStart(7)} req/s  p50 ${fmt(w.p50Ms)} ms  p99 ${fmt(w.p99Ms)} ms  errors ${w.non2xx + w.socketErrors}`);
      await sleep(500);
    }
  }

  const med = (t: Target, k: 'rps' | 'p50Ms' | 'p99Ms' | 'proxyCpuUsPerReq' | 'appCpuUsPerReq'): number => median(runs[t].map((x) => x[k]));
  /** Round by round a/b: each pair ran within the same round, a minute apart at most. */
  const roundRatios = (a: Target, b: Target): number[] => runs[a].map((x, i) => x.rps / runs[b][i]!.rps);
  const pairedRatio = (a: Target, b: Target): number => median(roundRatios(a, b));
  const errs = (t: Target): number => runs[t].reduce((a, x) => a + x.non2xx + x.socketErrors, 0);
  console.log(`\n## Throughput (median of ${ROUNDS}, ${CONNS} keep-alive connections, ${SECONDS} s each)\n`);
  console.log(mdTable([
    ['target', 'req/s', 'vs direct', 'vs http-proxy', 'p50 ms', 'p99 ms', 'proxy CPU µs/req', 'app CPU µs/req', 'errors'],
    ...targets.map((t) => [
      t, fmt(med(t, 'rps'), 0), ratio(med(t, 'rps'), med('direct', 'rps')), ratio(med(t, 'rps'), med('http-proxy', 'rps')),
      fmt(med(t, 'p50Ms')), fmt(med(t, 'p99Ms')), t === 'direct' ? '-' : fmt(med(t, 'proxyCpuUsPerReq'), 0), fmt(med(t, 'appCpuUsPerReq'), 0), errs(t),
    ]),
  ]));
  if (td3 !== null) {
    const ws = (await td3.status()).daemon.proxyWorkers as { index: number; requests: number; restarts: number }[];
    console.log(`\nbaton-workers: requests per worker so far ${ws.map((w) => `#${w.index} ${w.requests}${w.restarts ? ` (${w.restarts} restarts)` : ''}`).join(', ')}`);
  }
  console.log(`\nper round req/s: ${targets.map((t) => `${t} [${runs[t].map((x) => fmt(x.rps, 0)).join(', ')}]`).join('; ')}`);
  if (nginx !== null) console.log(`per round baton / nginx: ${roundRatios('baton', 'nginx').map((r) => fmt(r)).join(', ')}`);

  // p99 at half load: every target at 50% of the direct max rate (the issue's
  // measure), then at 50% of baton's own max rate (latency when nobody saturates).
  const openLoop = async (rate: number, title: string): Promise<Record<Target, OpenLoopResult>> => {
    console.log(`\n## ${title}: ${rate} req/s, open loop, ${CONNS} connections, ${SECONDS} s after 1 s warm-up\n`);
    const res: Partial<Record<Target, OpenLoopResult>> = {};
    const cpuPerReq: Partial<Record<Target, number>> = {};
    for (const t of targets) {
      const p0 = proxyCpu(t);
      res[t] = await runOpenLoop(urls[t], { rate, seconds: SECONDS, connections: CONNS, cpus: LOAD_CPU });
      // The 1 s warm-up is sent at the same rate and counted in the CPU time too.
      cpuPerReq[t] = ((proxyCpu(t) - p0) * 1000) / (res[t].sent + rate);
      await sleep(500);
    }
    const d = res.direct!;
    console.log(mdTable([
      ['target', 'achieved req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99 vs direct', 'max ms', 'errors + unfinished', 'proxy CPU µs/req'],
      ...targets.map((t) => {
        const h = res[t]!;
        return [t, fmt(h.achievedRps, 0), fmt(h.p50Ms), fmt(h.p90Ms), fmt(h.p99Ms), ratio(h.p99Ms, d.p99Ms), fmt(h.maxMs), h.errors + h.non2xx + h.unfinished, t === 'direct' ? '-' : fmt(cpuPerReq[t]!, 0)];
      }),
    ]));
    return res as Record<Target, OpenLoopResult>;
  };
  const half = await openLoop(Math.round(med('direct', 'rps') / 2), 'Latency at half load (50% of the direct max rate)');
  const hd = half.direct;
  const halfBaton = await openLoop(Math.round(med('baton', 'rps') / 2), "Latency at 50% of baton's own max rate");
  // Issue 13's measure: every target at half of nginx's maximum.
  const halfNginx = nginx !== null ? await openLoop(Math.round(med('nginx', 'rps') / 2), "Latency at 50% of nginx's max rate (issue 13)") : null;

  const tput = med('baton', 'rps') / med('direct', 'rps');
  const ahead = med('baton', 'rps') > med('http-proxy', 'rps');
  const p99x = half.baton.p99Ms / hd.p99Ms;
  const p99b = halfBaton.baton.p99Ms / halfBaton.direct.p99Ms;
  // Errors only count where the target is not saturated (at half of the direct max a proxy slower than that is).
  const noErrors = targets.every((t) => errs(t) === 0 && halfBaton[t].errors + halfBaton[t].non2xx === 0);
  console.log('\n## Targets\n');
  console.log(mdTable([
    ['target', 'measured', 'verdict'],
    ['baton >= 0.30 of direct throughput', `${tput.toFixed(2)}`, verdict(tput >= 0.3)],
    ['baton ahead of http-proxy', `${ratio(med('baton', 'rps'), med('http-proxy', 'rps'))}`, verdict(ahead)],
    ['baton p99 < 2x direct at half load', `${p99x.toFixed(2)}x`, verdict(p99x < 2)],
    ['(info) baton p99 vs direct at 50% of baton max', `${p99b.toFixed(2)}x`, '-'],
    ['(info) baton CPU per request vs undici-floor', ratio(med('baton', 'proxyCpuUsPerReq'), med('undici-floor', 'proxyCpuUsPerReq')), '-'],
    ['(info) baton (4 MB semi-space) vs baton-v8-young: req/s', ratio(med('baton', 'rps'), med('baton-v8-young', 'rps')), '-'],
    ['(info) baton vs baton-v8-young: CPU per request', ratio(med('baton', 'proxyCpuUsPerReq'), med('baton-v8-young', 'proxyCpuUsPerReq')), '-'],
    ['(info) baton vs baton-v8-young: p99 at 50% of baton max', ratio(halfBaton.baton.p99Ms, halfBaton['baton-v8-young'].p99Ms), '-'],
    ...(WORKERS > 1
      ? [
          [`(info) baton-workers (${WORKERS}) vs baton (in-process): req/s`, ratio(med('baton-workers', 'rps'), med('baton', 'rps')), '-'],
          [`(info) baton-workers (${WORKERS}) vs baton: proxy CPU per request`, ratio(med('baton-workers', 'proxyCpuUsPerReq'), med('baton', 'proxyCpuUsPerReq')), '-'],
          [`(info) baton-workers (${WORKERS}) vs baton: p99 at 50% of baton max`, ratio(halfBaton['baton-workers'].p99Ms, halfBaton.baton.p99Ms), '-'],
        ]
      : []),
    ...(nginx !== null
      ? [
          ['(info, issue 13: ≥ 0.75) baton vs nginx: req/s', ratio(med('baton', 'rps'), med('nginx', 'rps')), '-'],
          ['(info) baton vs nginx: req/s, median of the rounds\' own ratios (paired: a slow minute of the host weighs on both)', ratio(pairedRatio('baton', 'nginx'), 1), '-'],
          ['(info) baton-v8-young vs nginx: req/s, median of the rounds\' own ratios', ratio(pairedRatio('baton-v8-young', 'nginx'), 1), '-'],
          ['(info) baton vs nginx: proxy CPU per request', ratio(med('baton', 'proxyCpuUsPerReq'), med('nginx', 'proxyCpuUsPerReq')), '-'],
          ['(info) baton vs nginx: p99 at 50% of baton max', ratio(halfBaton.baton.p99Ms, halfBaton.nginx.p99Ms), '-'],
          ['(info, issue 13: ≤ 1.5) baton vs nginx: p99 at 50% of nginx max', ratio(halfNginx!.baton.p99Ms, halfNginx!.nginx.p99Ms), '-'],
          ['(info) baton-v8-young vs nginx: p99 at 50% of nginx max', ratio(halfNginx!['baton-v8-young'].p99Ms, halfNginx!.nginx.p99Ms), '-'],
        ]
      : []),
    ...(haproxy !== null
      ? [
          ['(info) baton vs haproxy: req/s', ratio(med('baton', 'rps'), med('haproxy', 'rps')), '-'],
          ['(info) baton vs haproxy: proxy CPU per request', ratio(med('baton', 'proxyCpuUsPerReq'), med('haproxy', 'proxyCpuUsPerReq')), '-'],
        ]
      : []),
    ['(info, issue 13: ≥ 2) baton vs http-proxy: req/s', ratio(med('baton', 'rps'), med('http-proxy', 'rps')), '-'],
    ['no errors', noErrors ? '0' : 'some', verdict(noErrors)],
  ]));
  return tput >= 0.3 && ahead && p99x < 2 && noErrors;
}

await runBench('proxy bench', (QUICK ? 5 : 15) * 60_000, main);
