// Proxy overhead with a canary active, against the plain path, in one daemon:
//   plain              service `plain`: one pool of 2 instances (release v1), no canary
//   canary             service `web`: stable pool (1 instance, v1) + canary pool
//                      (1 instance, v2) at weight 50; wrk keeps no cookie, so every
//                      request draws a bucket and every response sets the sticky cookie
//   canary + cookie    the same with a valid sticky cookie sent by wrk (got from a
//                      first request): the bucket is read from it, no Set-Cookie
//   plain + cookie     the plain path with the same Cookie header (the baseline of
//                      the cookie variant: the same request bytes)
// Both services have the same settings (strategy canary, the same steps, sticky
// cookie, metrics listener on) except their hosts and instance count: both paths
// reach 2 app processes. The canary is held at 50% by a `pause: promote` step:
// `baton deploy web <v2> --strategy canary` runs in the background until
// `baton status web --json` shows canary.waiting === 'promote'; it is aborted at the end.
//
// wrk -t1 -c50 -d10s --latency, 3 rounds interleaved (plain, canary, canary +
// cookie, plain + cookie, …), median per variant. Pinning as in proxy.ts (2+
// CPUs, taskset): wrk on CPU 1; the daemon and the app instances share CPU 0.
// The split is checked from the metrics listener (requests per release) around
// every canary round.
//
// Target: canary throughput ≥ 0.90 × plain.
//
//   node bench/canary.ts [--quick] [--rounds N] [--seconds S] [--no-pin]
// Needs wrk: apt-get update && apt-get install -y wrk

import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { createDaemon, freePort, waitUntil } from '../test/helpers/daemon.ts';
import {
  QUICK, ROOT, WRK_MISSING, collect, cpuMs, daemonCode, fixtureService, fmt, hasTaskset, hasWrk, machineLine, mdTable, median, NCPU, pin, ratio,
  registerDaemon, runBench, runWrk, sleep, spawnGroup, verdict, writeDaemonConfig, type WrkResult,
} from './lib.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    connections: { type: 'string', default: '50' },
  },
});
const ROUNDS = Number(values.rounds ?? (QUICK ? 1 : 3));
const SECONDS = Number(values.seconds ?? (QUICK ? 3 : 10));
const CONNS = Number(values.connections);
const PIN = !values['no-pin'] && hasTaskset && NCPU >= 2;
const SERVER_CPU = PIN ? '0' : null;
const LOAD_CPU = PIN ? '1' : null;
const TARGET = 0.9;
const COOKIE = 'baton_bucket';
const PLAIN_HOST = 'plain.bench.test';
const WEB_HOST = 'web.bench.test';

type Variant = 'plain' | 'canary' | 'canary + cookie' | 'plain + cookie';
const VARIANTS: Variant[] = ['plain', 'canary', 'canary + cookie', 'plain + cookie'];

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
  const same = ['strategy: canary', 'canary: { steps: [{ weight: 50 }, { pause: promote }, { weight: 100 }], sticky: { cookie: baton_bucket, key: random } }'];
  writeDaemonConfig(td, [
    fixtureService('plain', { instances: 2, hosts: [PLAIN_HOST], extra: same }),
    fixtureService('web', { instances: 1, hosts: [WEB_HOST], extra: same }),
  ].join('\n'), 'info', [`metrics_listen: "127.0.0.1:${metricsPort}"`]);
  await td.start();
  if (SERVER_CPU) pin(td.proc.pid!, SERVER_CPU); // before the deploys: the instances inherit it
  for (const s of ['plain', 'web']) {
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

  // A valid sticky cookie, and checks of what each variant gets.
  const url = `${td.url}/`;
  const web = await sample(url, { host: WEB_HOST }, 200);
  if (!web.cookie || web.setCookie !== 200) throw new Error(`expected a Set-Cookie on every cookieless response, got ${web.setCookie} of 200`);
  const cookie = web.cookie;
  const webCookie = await sample(url, { host: WEB_HOST, cookie }, 50);
  const plain = await sample(url, { host: PLAIN_HOST, cookie }, 50);
  console.log(`check, 200 requests without a cookie: ${JSON.stringify(web.bodies)}, ${web.setCookie} Set-Cookie; with "${cookie}": ${JSON.stringify(webCookie.bodies)}, ${webCookie.setCookie} Set-Cookie; plain: ${JSON.stringify(plain.bodies)}, ${plain.setCookie} Set-Cookie`);
  if (webCookie.setCookie !== 0 || Object.keys(webCookie.bodies).length !== 1) throw new Error('a valid cookie should pin one release without a Set-Cookie');
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  console.log(`metrics listener ${metricsUrl}: web ${JSON.stringify(await requestsByRelease(metricsUrl, 'web'))}\n`);

  const hdr: Record<Variant, Record<string, string>> = {
    plain: { Host: PLAIN_HOST },
    canary: { Host: WEB_HOST },
    'canary + cookie': { Host: WEB_HOST, Cookie: cookie },
    'plain + cookie': { Host: PLAIN_HOST, Cookie: cookie },
  };
  for (const v of VARIANTS) await runWrk(url, { connections: CONNS, seconds: 2, cpus: LOAD_CPU, headers: hdr[v] }); // warm-up

  type Run = WrkResult & { daemonUs: number; appUs: number; split: string; share: number };
  const runs: Record<Variant, Run[]> = { plain: [], canary: [], 'canary + cookie': [], 'plain + cookie': [] };
  const daemonPid = td.proc.pid!;
  for (let r = 0; r < ROUNDS; r++) {
    for (const v of VARIANTS) {
      const m0 = v.startsWith('canary') ? await requestsByRelease(metricsUrl, 'web') : {};
      const d0 = cpuMs(daemonPid);
      const a0 = appPids.reduce((a: number, p: number) => a + cpuMs(p), 0);
      const t0 = performance.now();
      const w = await runWrk(url, { connections: CONNS, seconds: SECONDS, cpus: LOAD_CPU, headers: hdr[v] });
      const wallMs = performance.now() - t0;
      const dMs = cpuMs(daemonPid) - d0;
      const aMs = appPids.reduce((a: number, p: number) => a + cpuMs(p), 0) - a0;
      const daemonUs = (dMs * 1000) / w.requests;
      const appUs = (aMs * 1000) / w.requests;
      // The share of a CPU the daemon and the instances got: ~1.0 when pinned and alone on CPU 0
      // (they are the bottleneck), lower when another process took CPU 0 from them.
      const share = (dMs + aMs) / (wallMs - 150); // wrk starts and parses in ~150 ms of the wall time
      let split = '';
      if (v.startsWith('canary')) {
        const m1 = await requestsByRelease(metricsUrl, 'web');
        const d = Object.fromEntries(Object.keys(m1).map((k) => [k, m1[k]! - (m0[k] ?? 0)]));
        const total = Object.values(d).reduce((a, b) => a + b, 0);
        split = Object.entries(d).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${fmt((100 * n) / total, 1)}%`).join(', ');
      }
      runs[v].push({ ...w, daemonUs, appUs, split, share });
      const errors = w.non2xx + w.socketErrors ? ` (${w.raw.split('\n').filter((l) => /Socket errors|Non-2xx/.test(l)).map((l) => l.trim()).join('; ')})` : '';
      console.log(`  round ${r + 1} ${v.padEnd(15)} ${fmt(w.rps, 0).padStart(7)} req/s  p50 ${fmt(w.p50Ms)} ms  p99 ${fmt(w.p99Ms)} ms  daemon ${fmt(daemonUs, 0)} + app ${fmt(appUs, 0)} µs/req  CPU share ${fmt(share)}  errors ${w.non2xx + w.socketErrors}${errors}${split ? `  split: ${split}` : ''}  (load avg ${os.loadavg()[0]!.toFixed(2)})`);
      await sleep(500);
    }
  }

  // Abort the held canary; the background deploy then ends (rolled back).
  const ab = await td.cli(['abort', 'web']);
  const deployOut = await Promise.race([canaryDone, sleep(30_000).then(() => 'still running 30 s after the abort')]);
  console.log(`\nbaton abort web: exit ${ab.code}; the canary deploy: ${String(deployOut).trim().split('\n').slice(-1)[0]}`);

  const med = (v: Variant, k: 'rps' | 'p50Ms' | 'p99Ms' | 'daemonUs' | 'appUs' | 'share'): number => median(runs[v].map((x) => x[k]));
  // Requests per CPU-second of the daemon + instances: what one core of their own gives, whatever others took.
  const perCpu = (v: Variant): number => median(runs[v].map((x) => 1e6 / (x.daemonUs + x.appUs)));
  const errs = (v: Variant): number => runs[v].reduce((a, x) => a + x.non2xx + x.socketErrors, 0);
  console.log(`\n## Throughput (median of ${ROUNDS}, ${CONNS} keep-alive connections, ${SECONDS} s each)\n`);
  console.log(mdTable([
    ['variant', 'req/s', 'vs plain', 'vs plain + cookie', 'p50 ms', 'p99 ms', 'daemon CPU µs/req', 'vs plain', 'app CPU µs/req', 'req per CPU-s', 'vs plain', 'CPU share', 'errors'],
    ...VARIANTS.map((v) => [
      v, fmt(med(v, 'rps'), 0), ratio(med(v, 'rps'), med('plain', 'rps')), ratio(med(v, 'rps'), med('plain + cookie', 'rps')), fmt(med(v, 'p50Ms')), fmt(med(v, 'p99Ms')),
      fmt(med(v, 'daemonUs'), 0), ratio(med(v, 'daemonUs'), med('plain', 'daemonUs')), fmt(med(v, 'appUs'), 0), fmt(perCpu(v), 0), ratio(perCpu(v), perCpu('plain')), fmt(med(v, 'share')), errs(v),
    ]),
  ]));
  console.log(`\nper round req/s: ${VARIANTS.map((v) => `${v} [${runs[v].map((x) => fmt(x.rps, 0)).join(', ')}]`).join('; ')}`);
  console.log(`split per canary round (metrics listener): ${VARIANTS.filter((v) => v.startsWith('canary')).map((v) => `${v}: ${runs[v].map((x) => `[${x.split}]`).join(' ')}`).join('; ')}`);

  const c = med('canary', 'rps') / med('plain', 'rps');
  const cc = med('canary + cookie', 'rps') / med('plain + cookie', 'rps');
  const noErrors = VARIANTS.every((v) => errs(v) === 0);
  console.log('\n## Targets\n');
  console.log(mdTable([
    ['target', 'measured', 'verdict'],
    [`canary (Set-Cookie on every response) >= ${TARGET} x plain throughput`, c.toFixed(2), verdict(c >= TARGET)],
    [`canary + valid cookie >= ${TARGET} x plain + the same cookie header`, cc.toFixed(2), verdict(cc >= TARGET)],
    ['(info) canary + valid cookie vs plain', ratio(med('canary + cookie', 'rps'), med('plain', 'rps')), '-'],
    ['(info) requests per CPU-second, canary vs plain', ratio(perCpu('canary'), perCpu('plain')), '-'],
    ['(info) requests per CPU-second, canary + cookie vs plain + cookie', ratio(perCpu('canary + cookie'), perCpu('plain + cookie')), '-'],
    ['(info) lowest CPU share of a round (< 0.9: another process took CPU 0)', fmt(Math.min(...VARIANTS.flatMap((v) => runs[v].map((x) => x.share)))), '-'],
    ['no errors', noErrors ? '0' : 'some', verdict(noErrors)],
  ]));
  return c >= TARGET && cc >= TARGET && noErrors;
}

await runBench('canary bench', (QUICK ? 4 : 10) * 60_000, main);
