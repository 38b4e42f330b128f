// Resident memory with proxy.workers 1 and 2, each measured inside its own
// process (/metrics: process_resident_memory_bytes for the daemon, and
// baton_proxy_worker_resident_memory_bytes per worker), idle after 2,000
// proxied requests. One instance of the fixture app.
//
//   node bench/workers-memory.ts

import { createDaemon, waitUntil } from '../test/helpers/daemon.ts';
import { fixtureService, machineLine, runBench, sleep, writeDaemonConfig } from './lib.ts';
import { startLoad } from '../test/helpers/load.ts';
import { freePort } from '../test/helpers/daemon.ts';

function metric(text: string, name: string): number[] {
  return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].map((m) => Number(m[1]));
}

async function measure(workers: number): Promise<{ daemon: number; workers: number[] }> {
  const td = await createDaemon({ start: false });
  try {
    return await measureIn(td, workers);
  } finally {
    await td.cleanup();
  }
}

async function measureIn(td: Awaited<ReturnType<typeof createDaemon>>, workers: number): Promise<{ daemon: number; workers: number[] }> {
  const metricsPort = await freePort();
  writeDaemonConfig(td, fixtureService('web', { instances: 1 }), 'info', [`metrics_listen: "127.0.0.1:${metricsPort}"`, ...(workers > 1 ? [`proxy: { workers: ${workers} }`] : [])]);
  await td.start();
  const dep = await td.cli(['deploy', 'web', await td.release('v1')]);
  if (dep.code !== 0) throw new Error(`deploy failed: ${dep.stdout}${dep.stderr}`);
  const load = startLoad({ url: `${td.url}/`, concurrency: 8, keepAlive: false, maxRequests: 2000, maxMs: 60_000 });
  await load.waitFor(2000, 60_000);
  const r = await load.stop();
  if (r.failed > 0) throw new Error(`${r.failed} failed`);
  // Reports come every 500 ms; then a few seconds idle.
  await sleep(3000);
  let text = '';
  await waitUntil('metrics', async () => {
    text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    return text.includes('process_resident_memory_bytes');
  }, 10_000);
  return { daemon: metric(text, 'process_resident_memory_bytes')[0]!, workers: metric(text, 'baton_proxy_worker_resident_memory_bytes') };
}

async function main(): Promise<boolean> {
  console.log(`# proxy workers: resident memory\n\n${machineLine()}\n`);
  const mb = (n: number): string => (n / 1048576).toFixed(1);
  for (const n of [1, 2]) {
    const m = await measure(n);
    const total = m.daemon + m.workers.reduce((a, b) => a + b, 0);
    console.log(`proxy.workers ${n}: daemon ${mb(m.daemon)} MB${m.workers.length ? `, workers ${m.workers.map(mb).join(' + ')} MB` : ''}, total ${mb(total)} MB`);
  }
  return true;
}

await runBench('workers memory bench', 5 * 60_000, main);
