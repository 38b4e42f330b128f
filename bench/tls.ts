// HTTPS throughput through baton against HAProxy, in one run, with the same
// certificate (ECDSA P-256) and the same single app process (the fixture app,
// started by a real baton daemon as its instance):
//   - HTTPS/1.1 keep-alive (wrk -c50), p99 from wrk --latency;
//   - HTTP/2 (h2load -c5 -m10: 5 connections × 10 streams, the same 50 in flight);
//   - handshakes: HTTPS/1.1 with Connection: close (wrk), a new TLS
//     handshake per request;
//   - slow read (slowhttptest -X, 500 connections reading 512 KiB responses
//     slowly): each proxy's RSS before and at its peak.
// HAProxy runs one thread (baton's proxy is one thread too), both on CPU 0
// beside the app; the load generator on CPU 1. Rounds interleave baton and
// HAProxy; the median per target is reported.
//
//   node bench/tls.ts [--quick] [--rounds N] [--seconds S] [--no-pin]
// Needs wrk, h2load (nghttp2-client), haproxy, openssl.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createDaemon, freePort, waitUntil } from '../test/helpers/daemon.ts';
import {
  QUICK, collect, fixtureService, fmt, machineLine, mb, mdTable, median, onCleanup, pin, pinned, ratio, registerDaemon, rssKb, runBench, runWrk, spawnGroup, wrkBenchOptions, writeDaemonConfig,
} from './lib.ts';

/** Terminal colour codes in a tool's output (ESC [ … letter). */
const TERMINAL_COLOURS = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, 'g');

const { ROUNDS, SECONDS, CONNS, PIN, SERVER_CPU, LOAD_CPU } = wrkBenchOptions();

interface H2Result {
  rps: number;
  failed: number;
}

async function runH2load(url: string, seconds: number, cpus: string | null): Promise<H2Result> {
  // The same 50 requests in flight as the HTTP/1.1 runs: 5 connections × 10 streams.
  const [cmd, args] = pinned(cpus, 'h2load', ['-c', String(Math.max(1, Math.round(CONNS / 10))), '-m', '10', '-D', String(seconds), '--warm-up-time=1', url]);
  const out = await collect(spawnGroup(cmd, args), (seconds + 30) * 1000, 'h2load');
  const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  const m = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
  if (!Number.isFinite(rps) || m === null) throw new Error(`could not parse h2load output:\n${out}`);
  if (!/Application protocol: h2/.test(out)) throw new Error(`h2load did not negotiate h2:\n${out}`);
  return { rps, failed: Number(m[2]) + Number(m[3]) };
}

async function main(): Promise<boolean> {
  console.log(`# HTTPS: baton vs HAProxy\n\n${machineLine()}`);
  for (const tool of ['wrk', 'h2load', 'haproxy', 'openssl', 'slowhttptest']) {
    if (spawnSync(tool, ['-v'], { stdio: 'ignore' }).error !== undefined) {
      console.error(`tls bench: ${tool} is not installed (apt-get install -y wrk nghttp2-client haproxy openssl)`);
      return false;
    }
  }
  const haproxyVersion = /version ([\d.]+)/.exec(spawnSync('haproxy', ['-v']).stdout.toString())?.[1] ?? '?';
  console.log(`wrk -t1 -c${CONNS} -d${SECONDS}s; h2load -c${Math.max(1, Math.round(CONNS / 10))} -m10 -D${SECONDS}; ${ROUNDS} interleaved round(s); HAProxy ${haproxyVersion}, nbthread 1; pinning: ${PIN ? 'load on CPU 1, app + proxies on CPU 0' : 'none'}\n`);

  // One certificate for both, from a throwaway CA.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'baton-bench-tls-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const ssl = (args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'site.key', '-out', 'site.pem', '-days', '2', '-subj', '/CN=bench.test', '-addext', 'subjectAltName=DNS:bench.test,IP:127.0.0.1']);
  writeFileSync(path.join(dir, 'combined.pem'), readFileSync(path.join(dir, 'site.pem'), 'utf8') + readFileSync(path.join(dir, 'site.key'), 'utf8'));

  const td = await createDaemon({ start: false });
  registerDaemon(td);
  const tlsPort = await freePort();
  writeDaemonConfig(td, fixtureService('web', { instances: 1 }), 'info', [
    'tls:',
    `  listen: ["127.0.0.1:${tlsPort}"]`,
    `  certificates: [{ hosts: [bench.test], cert: ${JSON.stringify(path.join(dir, 'site.pem'))}, key: ${JSON.stringify(path.join(dir, 'site.key'))} }]`,
    '  max_connections_per_client: 10000',
  ]);
  await td.start();
  if (SERVER_CPU) pin(td.proc.pid!, SERVER_CPU);
  const dep = await td.cli(['deploy', 'web', await td.release('v1')]);
  if (dep.code !== 0) throw new Error(`deploy failed: ${dep.stdout}${dep.stderr}`);
  const inst = (await td.status('web')).services[0].instances[0];
  if (SERVER_CPU) pin(inst.pid, SERVER_CPU);

  const haPort = await freePort();
  const haCfg = path.join(dir, 'haproxy.cfg');
  writeFileSync(haCfg, [
    'global',
    '  nbthread 1',
    '  maxconn 4000',
    '  ssl-default-bind-options ssl-min-ver TLSv1.2',
    'defaults',
    '  mode http',
    '  timeout connect 2s',
    '  timeout client 30s',
    '  timeout server 30s',
    '  timeout http-keep-alive 60s',
    'frontend fe',
    `  bind 127.0.0.1:${haPort} ssl crt ${path.join(dir, 'combined.pem')} alpn h2,http/1.1`,
    '  default_backend be',
    'backend be',
    '  http-reuse always',
    `  server app 127.0.0.1:${inst.port}`,
    '',
  ].join('\n'));
  const [hcmd, hargs] = pinned(SERVER_CPU, 'haproxy', ['-db', '-f', haCfg]);
  spawnGroup(hcmd, hargs, { stdio: 'ignore' });
  await waitUntil('haproxy to listen', async () => {
    const r = spawnSync('curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${haPort}/`]);
    return r.stdout?.toString() === '200';
  }, 10_000, 100);

  const targets = { baton: `https://127.0.0.1:${tlsPort}/`, haproxy: `https://127.0.0.1:${haPort}/` } as const;
  type Name = keyof typeof targets;
  const h1: Record<Name, { rps: number[]; p99: number[]; errors: number }> = { baton: { rps: [], p99: [], errors: 0 }, haproxy: { rps: [], p99: [], errors: 0 } };
  const h2: Record<Name, { rps: number[]; errors: number }> = { baton: { rps: [], errors: 0 }, haproxy: { rps: [], errors: 0 } };
  const hs: Record<Name, { rps: number[]; errors: number }> = { baton: { rps: [], errors: 0 }, haproxy: { rps: [], errors: 0 } };
  // Reference: baton's plain HTTP listener, same daemon, same app (what TLS costs baton).
  const plain: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const p = await runWrk(`${td.url}/`, { connections: CONNS, seconds: SECONDS, cpus: LOAD_CPU });
    plain.push(p.rps);
    console.log(`round ${round + 1} baton plain HTTP: ${fmt(p.rps, 0)} req/s (p99 ${fmt(p.p99Ms)} ms)`);
    for (const name of Object.keys(targets) as Name[]) {
      const url = targets[name];
      const a = await runWrk(url, { connections: CONNS, seconds: SECONDS, cpus: LOAD_CPU });
      h1[name].rps.push(a.rps);
      h1[name].p99.push(a.p99Ms);
      h1[name].errors += a.non2xx + a.socketErrors;
      const b = await runH2load(url, SECONDS, LOAD_CPU);
      h2[name].rps.push(b.rps);
      h2[name].errors += b.failed;
      const c = await runWrk(url, { connections: 10, seconds: SECONDS, cpus: LOAD_CPU, headers: { connection: 'close' } });
      hs[name].rps.push(c.rps);
      hs[name].errors += c.non2xx + c.socketErrors;
      console.log(`round ${round + 1} ${name}: h1 ${fmt(a.rps, 0)} req/s (p99 ${fmt(a.p99Ms)} ms), h2 ${fmt(b.rps, 0)} req/s, handshakes ${fmt(c.rps, 0)}/s`);
    }
  }
  const row = (label: string, b: number, h: number, unit: string): (string | number)[] => [label, `${fmt(b, 0)} ${unit}`, `${fmt(h, 0)} ${unit}`, ratio(b, h)];
  console.log(`\n${mdTable([
    ['', 'baton', `HAProxy ${haproxyVersion}`, 'baton / HAProxy'],
    ['plain HTTP/1.1 keep-alive (reference)', `${fmt(median(plain), 0)} req/s`, '-', '-'],
    row('HTTPS/1.1 keep-alive', median(h1.baton.rps), median(h1.haproxy.rps), 'req/s'),
    ['HTTPS/1.1 p99', `${fmt(median(h1.baton.p99))} ms`, `${fmt(median(h1.haproxy.p99))} ms`, ratio(median(h1.baton.p99), median(h1.haproxy.p99))],
    row('HTTP/2 (5 connections × 10 streams)', median(h2.baton.rps), median(h2.haproxy.rps), 'req/s'),
    row('new TLS connection per request', median(hs.baton.rps), median(hs.haproxy.rps), '/s'),
  ])}`);
  // Slow read: 500 connections reading a 512 KiB response a few bytes at a time (slowhttptest -X).
  // Resident memory of each proxy process, before and at its peak (sampled every 250 ms).
  const haPid = Number(spawnSync('pgrep', ['-f', `haproxy -db -f ${haCfg}`]).stdout.toString().trim().split('\n')[0]);
  const slowRead = async (name: Name | 'baton-plain', pid: number): Promise<{ before: number; peak: number; connected: number }> => {
    const before = rssKb(pid) ?? NaN;
    let peak = before;
    const timer = setInterval(() => (peak = Math.max(peak, rssKb(pid) ?? 0)), 250);
    const url = `${name === 'baton-plain' ? `${td.url}/` : targets[name]}download?bytes=524288`;
    const [cmd, args] = pinned(LOAD_CPU, 'slowhttptest', ['-X', '-c', '500', '-r', '250', '-w', '512', '-y', '1024', '-n', '5', '-z', '32', '-k', '3', '-l', String(QUICK ? 8 : 20), '-p', '5', '-u', url]);
    const out = (await collect(spawnGroup(cmd, args), 120_000, 'slowhttptest')).replace(TERMINAL_COLOURS, '');
    clearInterval(timer);
    const connected = Math.max(0, ...[...out.matchAll(/connected:\s+(\d+)/g)].map((m) => Number(m[1])));
    return { before, peak, connected };
  };
  // Plain HTTP through the same daemon tells TLS's share from the proxy's own buffering.
  const sr = { 'baton-plain': await slowRead('baton-plain', td.proc.pid!), baton: await slowRead('baton', td.proc.pid!), haproxy: await slowRead('haproxy', haPid) };
  console.log(`\nslow read (slowhttptest -X, 500 connections, 512 KiB × 3 responses):\n\n${mdTable([
    ['', 'RSS before', 'RSS peak', 'growth', 'connections held'],
    ...(['baton-plain', 'baton', 'haproxy'] as const).map((n) => [n === 'baton-plain' ? 'baton, plain HTTP' : n === 'baton' ? 'baton, HTTPS' : 'HAProxy, HTTPS', `${mb(sr[n].before)} MB`, `${mb(sr[n].peak)} MB`, `${mb(sr[n].peak - sr[n].before)} MB`, String(sr[n].connected)]),
  ])}`);

  const errors = h1.baton.errors + h2.baton.errors + hs.baton.errors;
  console.log(`\nerrors through baton: ${errors} (HAProxy: ${h1.haproxy.errors + h2.haproxy.errors + hs.haproxy.errors})`);
  return errors === 0;
}

await runBench('tls', 15 * 60_000, main);
