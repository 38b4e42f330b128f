// HTTPS through proxy workers (issue 13): one daemon per variant, each with a
// TLS listener and its own instance of the fixture app, measured in the same
// interleaved rounds:
//   - workers-1: `proxy.workers: 1` (the in-process proxy);
//   - workers-2: `proxy.workers: 2` (two worker processes on the shared TLS socket);
//   - workers-1-log / workers-2-log: the same with `proxy.access_log` to a file
//     (with workers the lines travel to the control plane, which writes them).
// Per round and variant: HTTPS/1.1 keep-alive (wrk -t1 -c50) and HTTP/2
// (h2load -c5 -m10); req/s and the proxy's CPU per request (the daemon and its
// workers together, from /proc), and the control plane's own share of it (with
// workers and the access log: the writing of every worker's lines). Nothing is pinned: the workers may use both
// cores, which wrk, h2load and the apps also use.
//
//   node bench/workers-tls.ts [--quick] [--rounds N] [--seconds S]
// Needs wrk, h2load (nghttp2-client), openssl.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createDaemon, freePort, type TestDaemon } from '../test/helpers/daemon.ts';
import { collect, cpuMs, fixtureService, fmt, machineLine, mdTable, median, onCleanup, registerDaemon, runBench, runWrk, spawnGroup, wrkBenchOptions, writeDaemonConfig } from './lib.ts';

const { ROUNDS, SECONDS, CONNS } = wrkBenchOptions();

type Variant = 'workers-1' | 'workers-2' | 'workers-1-log' | 'workers-2-log';
const VARIANTS: Variant[] = ['workers-1', 'workers-2', 'workers-1-log', 'workers-2-log'];

interface Target {
  td: TestDaemon;
  url: string;
  pids: number[];
}

async function h2load(url: string, seconds: number): Promise<{ rps: number; requests: number; failed: number }> {
  const out = await collect(spawnGroup('h2load', ['-c', String(Math.max(1, Math.round(CONNS / 10))), '-m', '10', '-D', String(seconds), '--warm-up-time=1', url]), (seconds + 30) * 1000, 'h2load');
  const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  const m = /requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
  if (!Number.isFinite(rps) || m === null || !/Application protocol: h2/.test(out)) throw new Error(`h2load:\n${out}`);
  return { rps, requests: Number(m[2]), failed: Number(m[3]) + Number(m[4]) };
}

async function main(): Promise<boolean> {
  console.log(`# HTTPS through proxy workers\n\n${machineLine()}\nload average: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  for (const tool of ['wrk', 'h2load', 'openssl']) {
    if (spawnSync(tool, ['-v'], { stdio: 'ignore' }).error !== undefined) {
      console.error(`workers-tls bench: ${tool} is not installed`);
      return false;
    }
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'baton-bench-wtls-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'site.key', '-out', 'site.pem', '-days', '2', '-subj', '/CN=bench.test', '-addext', 'subjectAltName=DNS:bench.test,IP:127.0.0.1'], { cwd: dir, stdio: 'ignore' });

  const start = async (v: Variant): Promise<Target> => {
    const td = await createDaemon({ start: false });
    registerDaemon(td);
    const tlsPort = await freePort();
    const workers = v.startsWith('workers-2') ? 2 : 1;
    writeDaemonConfig(td, fixtureService('web', { instances: 1 }), 'info', [
      'proxy:',
      `  workers: ${workers}`,
      ...(v.endsWith('-log') ? [`  access_log: { path: ${JSON.stringify(path.join(dir, `${v}.log`))}, max_size: 64MB, keep: 1 }`] : []),
      'tls:',
      `  listen: ["127.0.0.1:${tlsPort}"]`,
      `  certificates: [{ hosts: [bench.test], cert: ${JSON.stringify(path.join(dir, 'site.pem'))}, key: ${JSON.stringify(path.join(dir, 'site.key'))} }]`,
      '  max_connections_per_client: 10000',
    ]);
    await td.start();
    const dep = await td.cli(['deploy', 'web', await td.release('v1')]);
    if (dep.code !== 0) throw new Error(`deploy failed: ${dep.stdout}${dep.stderr}`);
    const st = await td.status();
    const pids = [td.proc.pid!, ...((st.daemon.proxyWorkers ?? []) as { pid: number }[]).map((w) => w.pid)];
    return { td, url: `https://127.0.0.1:${tlsPort}/`, pids };
  };
  const targets = {} as Record<Variant, Target>;
  for (const v of VARIANTS) targets[v] = await start(v);
  console.log(`wrk -t1 -c${CONNS} -d${SECONDS}s, h2load -c${Math.max(1, Math.round(CONNS / 10))} -m10 -D${SECONDS}; ${ROUNDS} interleaved round(s); nothing pinned\n`);

  const cpu = (t: Target): number => t.pids.reduce((n, pid) => n + cpuMs(pid), 0);
  const runs: Record<Variant, { h1: number; h1Cpu: number; h2: number; h2Cpu: number; ctlCpu: number; errors: number }[]> = { 'workers-1': [], 'workers-2': [], 'workers-1-log': [], 'workers-2-log': [] };
  for (let r = 0; r < ROUNDS; r++) {
    const order = [...VARIANTS.slice(r % VARIANTS.length), ...VARIANTS.slice(0, r % VARIANTS.length)];
    for (const v of order) {
      const t = targets[v];
      let c0 = cpu(t);
      const ctl0 = cpuMs(t.pids[0]!);
      const w = await runWrk(t.url, { connections: CONNS, seconds: SECONDS, cpus: null });
      const h1Cpu = ((cpu(t) - c0) * 1000) / w.requests;
      c0 = cpu(t);
      const h = await h2load(t.url, SECONDS);
      const h2Cpu = ((cpu(t) - c0) * 1000) / h.requests;
      const ctlCpu = ((cpuMs(t.pids[0]!) - ctl0) * 1000) / (w.requests + h.requests);
      runs[v].push({ h1: w.rps, h1Cpu, h2: h.rps, h2Cpu, ctlCpu, errors: w.non2xx + w.socketErrors + h.failed });
      console.log(`round ${r + 1} ${v}: HTTPS/1.1 ${fmt(w.rps, 0)} req/s (${fmt(h1Cpu, 0)} µs/req), HTTP/2 ${fmt(h.rps, 0)} req/s (${fmt(h2Cpu, 0)} µs/req), control plane ${fmt(ctlCpu, 1)} µs/req, load ${os.loadavg()[0]!.toFixed(1)}`);
    }
  }
  const med = (v: Variant, k: 'h1' | 'h1Cpu' | 'h2' | 'h2Cpu' | 'ctlCpu'): number => median(runs[v].map((x) => x[k]));
  console.log(`\n${mdTable([
    ['variant', 'HTTPS/1.1 req/s', 'vs workers-1', 'CPU µs/req', 'HTTP/2 req/s', 'vs workers-1', 'CPU µs/req', 'control plane µs/req (with workers)', 'errors'],
    ...VARIANTS.map((v) => [v, fmt(med(v, 'h1'), 0), fmt(med(v, 'h1') / med('workers-1', 'h1')), fmt(med(v, 'h1Cpu'), 0), fmt(med(v, 'h2'), 0), fmt(med(v, 'h2') / med('workers-1', 'h2')), fmt(med(v, 'h2Cpu'), 0), v.startsWith('workers-2') ? fmt(med(v, 'ctlCpu'), 1) : '-', String(runs[v].reduce((n, x) => n + x.errors, 0))]),
  ])}`);
  for (const v of ['workers-2', 'workers-2-log'] as const) {
    const ws = (await targets[v].td.status()).daemon.proxyWorkers as { index: number; requests: number }[];
    console.log(`${v}: requests per worker ${ws.map((w) => `#${w.index} ${w.requests}`).join(', ')}`);
  }
  for (const v of ['workers-1-log', 'workers-2-log'] as const) {
    const a = (await targets[v].td.status()).daemon.accessLog as { written: number; dropped: number };
    const lines = readFileSync(path.join(dir, `${v}.log`), 'utf8').split('\n').length - 1;
    console.log(`${v}: access log written ${a.written}, dropped ${a.dropped}, lines in the file ${lines}`);
  }
  console.log(`load average at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  return true;
}

void runBench('workers-tls', 30 * 60_000, main);
