// Daemon memory: VmRSS of the daemon process (/proc/PID/status) with 3 services
// × 2 instances of the fixture app, idle and then under 1 minute of load spread
// over the 3 services (routed by Host header). Baselines from the same run: the
// daemon before any service runs, and one app instance (a plain Node process).
//
//   node bench/memory.ts [--quick] [--seconds S] [--daemon-node-options=--max-semi-space-size=2]

import { parseArgs } from 'node:util';
import { createDaemon } from '../test/helpers/daemon.ts';
import { startLoad, type LoadResult } from '../test/helpers/load.ts';
import { fixtureService, fmt, machineLine, mb, mdTable, median, QUICK, ratio, registerDaemon, rssKb, runBench, sleep, verdict, writeDaemonConfig } from './lib.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    seconds: { type: 'string' },
    // Extra Node flags for the daemon (e.g. "--max-semi-space-size=2"), to try memory settings.
    // Passed through NODE_OPTIONS, so the CLI runs and the instances get them too.
    'daemon-node-options': { type: 'string' },
  },
});
const LOAD_SECONDS = Number(values.seconds ?? (QUICK ? 10 : 60));
const TARGET_MB = 80;
const SERVICES = ['alpha', 'beta', 'gamma'];
const host = (s: string): string => `${s}.bench.test`;

async function sampleRss(pid: number, n: number, everyMs: number): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = rssKb(pid);
    if (r !== null) xs.push(r);
    if (i < n - 1) await sleep(everyMs);
  }
  return median(xs);
}

async function main(): Promise<boolean> {
  console.log(`# daemon memory\n\n${machineLine()}`);
  if (values['daemon-node-options']) {
    process.env['NODE_OPTIONS'] = `${process.env['NODE_OPTIONS'] ?? ''} ${values['daemon-node-options']}`.trim();
    console.log(`NODE_OPTIONS for the daemon: ${process.env['NODE_OPTIONS']}`);
  }
  const td = await createDaemon({ start: false });
  registerDaemon(td);
  writeDaemonConfig(td, SERVICES.map((s) => fixtureService(s, { instances: 2, hosts: [host(s)] })).join('\n'), 'info');
  await td.start();
  const pid = td.proc.pid!;
  await sleep(2000);
  const empty = await sampleRss(pid, 5, 200);

  for (const s of SERVICES) {
    const r = await td.cli(['deploy', s, await td.release(`${s}-v1`)]);
    if (r.code !== 0) throw new Error(`deploy ${s} failed:\n${r.stdout}${r.stderr}`);
  }
  const st = await td.status();
  const instances = st.services.flatMap((s: any) => s.instances) as { pid: number }[];
  console.log(`${st.services.length} services, ${instances.length} instances; daemon pid ${pid}`);
  await sleep(5000);
  const idle = await sampleRss(pid, 10, 500);
  const instanceRss = median(instances.map((i) => rssKb(i.pid) ?? NaN).filter(Number.isFinite));

  // Load: per service 4 keep-alive clients + 1 client with a new connection per
  // request; every 100th request is a 256 KB download (streamed through the proxy).
  console.log(`load: ${LOAD_SECONDS} s, per service 4 keep-alive clients + 1 new-connection client, Host-routed`);
  const mix = [{ path: '/download?bytes=262144', every: 100 }];
  const loads = SERVICES.flatMap((s) => [
    startLoad({ url: `${td.url}/`, concurrency: 4, keepAlive: true, headers: { host: host(s) }, mix, maxMs: (LOAD_SECONDS + 10) * 1000 }),
    startLoad({ url: `${td.url}/`, concurrency: 1, keepAlive: false, headers: { host: host(s) }, mix, maxMs: (LOAD_SECONDS + 10) * 1000 }),
  ]);
  const samples: number[] = [];
  const t0 = Date.now();
  let results: LoadResult[] = [];
  try {
    while (Date.now() - t0 < LOAD_SECONDS * 1000) {
      await sleep(1000);
      const r = rssKb(pid);
      if (r !== null) samples.push(r);
    }
  } finally {
    results = await Promise.all(loads.map((l) => l.stop()));
  }
  const endOfLoad = samples[samples.length - 1] ?? NaN;
  const peak = Math.max(...samples);
  await sleep(10_000);
  const settled = await sampleRss(pid, 5, 200);
  // The goal is "back within 10 MB of idle a minute after load".
  await sleep(QUICK ? 5_000 : 49_000);
  const minuteAfter = await sampleRss(pid, 5, 200);

  const total = results.reduce((a, r) => a + r.total, 0);
  const failed = results.reduce((a, r) => a + r.failed, 0);
  const perService = SERVICES.map((s, i) => results[2 * i]!.total + results[2 * i + 1]!.total);
  const wrongBody = results.reduce((a, r, i) => a + Object.entries(r.bodies).filter(([b]) => b !== `${SERVICES[i >> 1]}-v1` && b.length < 64).reduce((x, [, n]) => x + n, 0), 0);

  console.log(`\nload: ${total} requests (${SERVICES.map((s, i) => `${s} ${perService[i]}`).join(', ')}), ${failed} failed, ${wrongBody} answered by the wrong service\n`);
  console.log(mdTable([
    ['daemon VmRSS', 'MB', 'vs idle', 'vs one app instance'],
    ['started, no service running', mb(empty), ratio(empty, idle), ratio(empty, instanceRss)],
    ['3 services × 2 instances, idle', mb(idle), '1.00x', ratio(idle, instanceRss)],
    [`under load: peak (1 s samples over ${LOAD_SECONDS} s)`, mb(peak), ratio(peak, idle), ratio(peak, instanceRss)],
    ['under load: at the end', mb(endOfLoad), ratio(endOfLoad, idle), ratio(endOfLoad, instanceRss)],
    ['10 s after the load', mb(settled), ratio(settled, idle), ratio(settled, instanceRss)],
    [QUICK ? '15 s after the load' : '60 s after the load', mb(minuteAfter), ratio(minuteAfter, idle), ratio(minuteAfter, instanceRss)],
    ['(baseline) one app instance, idle', mb(instanceRss), '-', '1.00x'],
  ]));
  const worst = Math.max(idle, peak, settled) / 1024;
  const ok = worst < TARGET_MB && failed === 0 && wrongBody === 0;
  console.log(`\ntarget: daemon RSS < ${TARGET_MB} MB idle and under load: worst ${fmt(worst, 1)} MB → ${verdict(worst < TARGET_MB)}${failed || wrongBody ? '; requests failed or misrouted → MISS' : ''}`);
  console.log(`a minute after the load: ${fmt((minuteAfter - idle) / 1024, 1)} MB above idle (goal ≤ 10 MB)`);
  return ok;
}

await runBench('memory bench', (QUICK ? 3 : 5) * 60_000, main);
