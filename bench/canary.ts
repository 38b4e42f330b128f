// Proxy overhead with a canary active, against the plain path, in one daemon:
//   plain                service `plain`: one pool of 2 instances (release v1), no canary
//   canary               service `web`: stable pool (1 instance, v1) + canary pool
//                        (1 instance, v2) at weight 50; wrk keeps no cookie, so every
//                        request draws a bucket and every response sets the sticky
//                        cookie. Compared with `plain` (both spread over 2 processes).
//   canary, 2 cookies    the same split with valid cookies: a wrk script alternates a
//                        stable-bucket and a canary-bucket cookie, so no Set-Cookie;
//                        tells the cost of issuing cookies from the cost of the split
//   canary + cookie      wrk -H 'Cookie: <one valid cookie from a first request>':
//                        every request to one pool (1 process), no Set-Cookie.
//                        Compared with:
//   single + cookie      service `single`: one pool of 1 instance, the same Cookie header
// All three services have the same settings (strategy canary, the same steps,
// sticky cookie, metrics listener on) except hosts and instance count. The
// canary is held at 50% by a `pause: promote` step: `baton deploy web <v2>
// --strategy canary` runs in the background until `baton status web --json`
// shows canary.waiting === 'promote'; it is aborted at the end.
//
// wrk -t1 -c50 -d10s --latency, 3 rounds interleaved, median per variant.
// Pinning as in proxy.ts (2+ CPUs, taskset): wrk on CPU 1; the daemon and the
// instances share CPU 0, so what baton costs shows as CPU taken from the app.
// Per round: CPU µs per request of the daemon and of the instances
// (/proc/PID/stat), their share of a CPU (< 0.9: another process took CPU 0),
// and the split per release from the metrics listener.
//
// Target: canary throughput ≥ 0.90 × its plain baseline. The verdict takes the
// ratio to the baseline within each round, then the median ("paired"): the
// machine drifts by ±25% between rounds, more than the effect measured. The
// ratio of the medians is printed next to it.
//
//   node bench/canary.ts [--quick] [--rounds N] [--seconds S] [--no-pin]
// Needs wrk: apt-get update && apt-get install -y wrk

import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { createDaemon, freePort, waitUntil } from '../test/helpers/daemon.ts';
import {
  QUICK, ROOT, WRK_MISSING, collect, cpuMs, cpuTicks, daemonCode, fixtureService, fmt, hasWrk, machineLine, mdTable, median, pin, ratio,
  registerDaemon, wrkBenchOptions, runBench, runWrk, sleep, spawnGroup, verdict, writeDaemonConfig, type WrkResult,
} from './lib.ts';

const { ROUNDS, SECONDS, CONNS, PIN, SERVER_CPU, LOAD_CPU } = wrkBenchOptions();
const TARGET = 0.9;
const COOKIE = 'baton_bucket';
const PLAIN_HOST = 'plain.bench.test';
const WEB_HOST = 'web.bench.test';
const SINGLE_HOST = 'single.bench.test';

interface Variant {
  name: string;
  /** The service whose figures this variant reads. */
  service: 'plain' | 'web' | 'single';
  headers: Record<string, string>;
  script?: string;
  /** The variant it is compared with (same number of app processes reached). */
  baseline: string | null;
}

/** baton_requests_total of one service, per release, from the metrics listener. */
async function requestsByRelease(metricsUrl: string, service: string): Promise<Record<string, number>> {
  const r = await request(metricsUrl);
  const text = await r.body.text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^baton_requests_total\{service="([^"]*)",release="([^"]*)"\} (\d+)$/gm)) {
    if (m[1] === service) out[m[2]!] = Number(m[3]);
  }
  return out;
}

async function sample(url: string, headers: Record<string, string>, n: number): Promise<{ bodies: Record<string, number>; setCookie: number; cookie: string | null }> {
  const bodies: Record<string, number> = {};
  let setCookie = 0;
  let cookie: string | null = null;
  for (let i = 0; i < n; i++) {
    const r = await request(url, { headers });
    const b = (await r.body.text()).trim();
    bodies[b] = (bodies[b] ?? 0) + 1;
    const sc = r.headers['set-cookie'];
    const first = Array.isArray(sc) ? sc[0] : sc;
    if (first !== undefined) {
      setCookie++;
      cookie ??= first.split(';')[0]!;
    }
  }
  return { bodies, setCookie, cookie };
}

async function main(): Promise<boolean> {
  console.log(`# proxy overhead with a canary active\n\n${machineLine()}`);
  console.log(`daemon runs: ${daemonCode()}`);
  if (!hasWrk) {
    console.error(`\ncanary bench: ${WRK_MISSING}`);
    return false;
  }
  console.log(`wrk -t1 -c${CONNS} -d${SECONDS}s --latency, ${ROUNDS} interleaved round(s); pinning: ${PIN ? 'wrk on CPU 1, daemon + instances on CPU 0' : 'none'}\n`);

  const metricsPort = await freePort();
  const td = await createDaemon({ start: false });
  registerDaemon(td);
  const same = ['strategy: canary', `canary: { steps: [{ weight: 50 }, { pause: promote }, { weight: 100 }], sticky: { cookie: ${COOKIE}, key: random } }`];
  writeDaemonConfig(td, [
    fixtureService('plain', { instances: 2, hosts: [PLAIN_HOST], extra: same }),
    fixtureService('web', { instances: 1, hosts: [WEB_HOST], extra: same }),
    fixtureService('single', { instances: 1, hosts: [SINGLE_HOST], extra: same }),
  ].join('\n'), 'info', [`metrics_listen: "127.0.0.1:${metricsPort}"`]);
  await td.start();
  if (SERVER_CPU) pin(td.proc.pid!, SERVER_CPU); // before the deploys: the instances inherit it
  for (const s of ['plain', 'web', 'single']) {
    const r = await td.cli(['deploy', s, await td.release('v1')]);
    if (r.code !== 0) throw new Error(`deploy of ${s} failed: ${r.stdout}${r.stderr}`);
  }

  // The canary, held at 50% by `pause: promote`.
  const canaryDeploy = spawnGroup(process.execPath, [path.join(ROOT, 'bin/baton.js'), 'deploy', 'web', await td.release('v2'), '--strategy', 'canary', '--config', td.configFile], { cwd: td.dir });
  const canaryDone = collect(canaryDeploy, 10 * 60_000, 'baton deploy --strategy canary').catch((e: Error) => e.message);
  let st: any = null;
  await waitUntil('the canary to wait for `baton promote`', async () => {
    st = await td.status('web');
    return st.services[0].canary?.waiting === 'promote';
  }, 60_000, 200);
  const canary = st.services[0].canary;
  const insts = (await td.status()).services.flatMap((s: any) => s.instances.map((i: any) => ({ ...i, service: s.name })));
  console.log(`canary: ${canary.release} at ${canary.weight}% (step ${canary.step}/${canary.steps.length}: ${canary.steps.join(' → ')}), waiting for ${canary.waiting}`);
  console.log(`instances: ${insts.map((i: any) => `${i.service}/${i.release} (${i.role}, pid ${i.pid})`).join(', ')}`);
  if (canary.weight !== 50) throw new Error(`expected the canary at 50%, got ${canary.weight}`);
  for (const i of insts) if (SERVER_CPU) pin(i.pid, SERVER_CPU);
  const appPids = insts.filter((i: any) => i.role === 'current' || i.role === 'canary').map((i: any) => i.pid as number);

  // Valid sticky cookies (one landing on each release), and checks of what each variant gets.
  const url = `${td.url}/`;
  const cookieFor: Record<string, string> = {};
  for (let i = 0; i < 50 && Object.keys(cookieFor).length < 2; i++) {
    const r = await sample(url, { host: WEB_HOST }, 1);
    cookieFor[Object.keys(r.bodies)[0]!] ??= r.cookie!;
  }
  if (!cookieFor['v1'] || !cookieFor['v2']) throw new Error(`no cookie for each release: ${JSON.stringify(cookieFor)}`);
  const cookie = cookieFor['v1'];
  const web = await sample(url, { host: WEB_HOST }, 200);
  if (web.setCookie !== 200) throw new Error(`expected a Set-Cookie on every cookieless response, got ${web.setCookie} of 200`);
  const webCookie = await sample(url, { host: WEB_HOST, cookie }, 50);
  const single = await sample(url, { host: SINGLE_HOST, cookie }, 50);
  console.log(`check, 200 requests without a cookie: ${JSON.stringify(web.bodies)}, ${web.setCookie} Set-Cookie; with "${cookie}": ${JSON.stringify(webCookie.bodies)}, ${webCookie.setCookie} Set-Cookie; single: ${JSON.stringify(single.bodies)}, ${single.setCookie} Set-Cookie`);
  if (webCookie.setCookie !== 0 || Object.keys(webCookie.bodies).join() !== 'v1') throw new Error('a valid cookie should pin its release without a Set-Cookie');
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  console.log(`metrics listener ${metricsUrl}: web ${JSON.stringify(await requestsByRelease(metricsUrl, 'web'))}\n`);

  // Two prepared requests, alternated: half the requests carry a stable-bucket cookie, half a canary-bucket one.
  const script = path.join(td.dir, 'two-cookies.lua');
  const lua = (c: string): string => `wrk.format(nil, nil, { ["Host"] = "${WEB_HOST}", ["Cookie"] = "${c}" })`;
  writeFileSync(script, `local reqs, n = {}, 0\ninit = function() reqs[0] = ${lua(cookieFor['v1'])}; reqs[1] = ${lua(cookieFor['v2'])} end\nrequest = function() n = n + 1; return reqs[n % 2] end\n`);

  const variants: Variant[] = [
    { name: 'plain', service: 'plain', headers: { Host: PLAIN_HOST }, baseline: null },
    { name: 'canary', service: 'web', headers: { Host: WEB_HOST }, baseline: 'plain' },
    { name: 'canary, 2 cookies', service: 'web', headers: {}, script, baseline: 'plain' },
    { name: 'single + cookie', service: 'single', headers: { Host: SINGLE_HOST, Cookie: cookie }, baseline: null },
    { name: 'canary + cookie', service: 'web', headers: { Host: WEB_HOST, Cookie: cookie }, baseline: 'single + cookie' },
  ];
  const wrkOpts = (v: Variant, seconds: number) => ({ connections: CONNS, seconds, cpus: LOAD_CPU, headers: v.headers, ...(v.script ? { script: v.script } : {}) });
  for (const v of variants) await runWrk(url, wrkOpts(v, 2)); // warm-up

  type Run = WrkResult & { daemonUs: number; appUs: number; split: string; share: number; steal: number };
  const runs = new Map<string, Run[]>(variants.map((v) => [v.name, []]));
  const daemonPid = td.proc.pid!;
  const perInstance = async (service: string): Promise<Record<string, number>> =>
    Object.fromEntries((await td.status(service)).services[0].instances.map((i: any) => [i.id, i.requests as number]));
  for (let r = 0; r < ROUNDS; r++) {
    // A different order each round, so no variant always follows the same one.
    for (const v of [...variants.slice(r % variants.length), ...variants.slice(0, r % variants.length)]) {
      const m0 = await requestsByRelease(metricsUrl, v.service);
      const i0 = await perInstance(v.service);
      const s0 = cpuTicks(0);
      const d0 = cpuMs(daemonPid);
      const a0 = appPids.reduce((a: number, p: number) => a + cpuMs(p), 0);
      const t0 = performance.now();
      const w = await runWrk(url, wrkOpts(v, SECONDS));
      const wallMs = performance.now() - t0;
      const dMs = cpuMs(daemonPid) - d0;
      const aMs = appPids.reduce((a: number, p: number) => a + cpuMs(p), 0) - a0;
      const daemonUs = (dMs * 1000) / w.requests;
      const appUs = (aMs * 1000) / w.requests;
      // The share of a CPU the daemon and the instances got: ~1.0 when pinned and alone on CPU 0
      // (they are the bottleneck), lower when another process took CPU 0 from them.
      const share = (dMs + aMs) / (wallMs - 150); // wrk starts and parses in ~150 ms of the wall time
      const s1 = cpuTicks(0);
      const steal = (s1.steal - s0.steal) / (s1.total - s0.total);
      const m1 = await requestsByRelease(metricsUrl, v.service);
      const delta = Object.fromEntries(Object.keys(m1).map((k) => [k, m1[k]! - (m0[k] ?? 0)]));
      const total = Object.values(delta).reduce((a, b) => a + b, 0);
      const split = Object.entries(delta).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${fmt((100 * n) / total, 1)}%`).join(', ');
      const i1 = await perInstance(v.service);
      const byInstance = Object.keys(i1).map((k) => i1[k]! - (i0[k] ?? 0)).filter((n) => n > 0).map((n) => `${fmt((100 * n) / total, 0)}%`).join(' / ');
      if (Math.abs(total - w.requests) > CONNS + 5) throw new Error(`${v.name}: wrk counted ${w.requests} requests, the metrics of ${v.service} ${total}: wrong service?`);
      runs.get(v.name)!.push({ ...w, daemonUs, appUs, split, share, steal });
      const errors = w.non2xx + w.socketErrors ? ` (${w.raw.split('\n').filter((l) => /Socket errors|Non-2xx/.test(l)).map((l) => l.trim()).join('; ')})` : '';
      console.log(`  round ${r + 1} ${v.name.padEnd(17)} ${fmt(w.rps, 0).padStart(7)} req/s  p50 ${fmt(w.p50Ms)} ms  p99 ${fmt(w.p99Ms)} ms  daemon ${fmt(daemonUs, 0)} + app ${fmt(appUs, 0)} µs/req  CPU share ${fmt(share)}  CPU 0 steal ${fmt(100 * steal, 0)}%  errors ${w.non2xx + w.socketErrors}${errors}  split: ${split} (instances ${byInstance})  (load avg ${os.loadavg()[0]!.toFixed(2)})`);
      await sleep(500);
    }
  }

  // Abort the held canary; the background deploy then ends (rolled back).
  const ab = await td.cli(['abort', 'web']);
  const deployOut = await Promise.race([canaryDone, sleep(30_000).then(() => 'still running 30 s after the abort')]);
  console.log(`\nbaton abort web: exit ${ab.code}; the canary deploy: ${String(deployOut).trim().split('\n').slice(-1)[0]}`);

  const med = (v: string, k: 'rps' | 'p50Ms' | 'p99Ms' | 'daemonUs' | 'appUs' | 'share'): number => median(runs.get(v)!.map((x) => x[k]));
  // Requests per CPU-second of the daemon + instances: what one core of their own gives, whatever others took.
  const perCpu = (v: string): number => median(runs.get(v)!.map((x) => 1e6 / (x.daemonUs + x.appUs)));
  const errs = (v: string): number => runs.get(v)!.reduce((a, x) => a + x.non2xx + x.socketErrors, 0);
  const base = (v: Variant): string => v.baseline ?? v.name;
  // Paired: the ratio to the baseline within each round (the machine drifts between rounds), then the median.
  const paired = (v: string, b: string, f: (x: Run) => number): number => median(runs.get(v)!.map((x, i) => f(x) / f(runs.get(b)![i]!)));
  console.log(`\n## Throughput (median of ${ROUNDS}, ${CONNS} keep-alive connections, ${SECONDS} s each; each variant against its baseline)\n`);
  console.log(mdTable([
    ['variant', 'baseline', 'req/s', 'vs baseline', 'paired', 'p50 ms', 'p99 ms', 'daemon CPU µs/req', 'vs baseline', 'app CPU µs/req', 'req per CPU-s', 'vs baseline', 'CPU share', 'errors'],
    ...variants.map((v) => [
      v.name, v.baseline ?? '-', fmt(med(v.name, 'rps'), 0), ratio(med(v.name, 'rps'), med(base(v), 'rps')), `${fmt(paired(v.name, base(v), (x) => x.rps))}x`, fmt(med(v.name, 'p50Ms')), fmt(med(v.name, 'p99Ms')),
      fmt(med(v.name, 'daemonUs'), 0), ratio(med(v.name, 'daemonUs'), med(base(v), 'daemonUs')), fmt(med(v.name, 'appUs'), 0),
      fmt(perCpu(v.name), 0), ratio(perCpu(v.name), perCpu(base(v))), fmt(med(v.name, 'share')), errs(v.name),
    ]),
  ]));
  console.log(`\nper round req/s: ${variants.map((v) => `${v.name} [${runs.get(v.name)!.map((x) => fmt(x.rps, 0)).join(', ')}]`).join('; ')}`);
  console.log(`split per round (metrics listener): ${variants.filter((v) => v.service === 'web').map((v) => `${v.name}: ${runs.get(v.name)!.map((x) => `[${x.split}]`).join(' ')}`).join('; ')}`);

  const c = paired('canary', 'plain', (x) => x.rps);
  const cc = paired('canary + cookie', 'single + cookie', (x) => x.rps);
  const c2 = paired('canary, 2 cookies', 'plain', (x) => x.rps);
  const noErrors = variants.every((v) => errs(v.name) === 0);
  const allRuns = [...runs.values()].flat();
  const minShare = Math.min(...allRuns.map((x) => x.share));
  console.log('\n## Targets\n');
  console.log(mdTable([
    ['target', 'measured', 'verdict'],
    [`canary (a Set-Cookie on every response) >= ${TARGET} x plain throughput (paired median)`, `${c.toFixed(2)} (medians: ${ratio(med('canary', 'rps'), med('plain', 'rps'))})`, verdict(c >= TARGET)],
    [`canary + a valid cookie >= ${TARGET} x single + the same cookie header (paired median)`, `${cc.toFixed(2)} (medians: ${ratio(med('canary + cookie', 'rps'), med('single + cookie', 'rps'))})`, verdict(cc >= TARGET)],
    ['(info) canary, 2 valid cookies (same split, no Set-Cookie) vs plain (paired median)', `${c2.toFixed(2)} (medians: ${ratio(med('canary, 2 cookies', 'rps'), med('plain', 'rps'))})`, '-'],
    ['(info) daemon CPU per request: canary vs plain (paired median)', `${fmt(paired('canary', 'plain', (x) => x.daemonUs))}x`, '-'],
    ['(info) requests per CPU-second: canary vs plain', ratio(perCpu('canary'), perCpu('plain')), '-'],
    ['(info) requests per CPU-second: canary + cookie vs single + cookie', ratio(perCpu('canary + cookie'), perCpu('single + cookie')), '-'],
    ['(info) lowest CPU share of a round (< 0.9: another process took CPU 0)', fmt(minShare), '-'],
    ['(info) CPU 0 time stolen by the hypervisor: median / max of the rounds', `${fmt(100 * median(allRuns.map((x) => x.steal)), 0)}% / ${fmt(100 * Math.max(...allRuns.map((x) => x.steal)), 0)}%`, '-'],
    ['no errors', noErrors ? '0' : 'some', verdict(noErrors)],
  ]));
  return c >= TARGET && cc >= TARGET && noErrors;
}

await runBench('canary bench', (QUICK ? 4 : 10) * 60_000, main);
