// HTTPS throughput through baton against nginx and HAProxy, in one run, with the
// same certificate (ECDSA P-256) and the same single app process (the fixture
// app, started by a real baton daemon as its instance):
//   - HTTPS/1.1 keep-alive (wrk -c50), p99 from wrk --latency;
//   - HTTP/2 (h2load -c5 -m10: 5 connections × 10 streams, the same 50 in flight);
//   - handshakes: HTTPS/1.1 with Connection: close (wrk), a new TLS
//     handshake per request;
//   - slow read (slowhttptest -X, 500 connections reading 512 KiB responses
//     slowly): each proxy's RSS before and at its peak. Measured first, each
//     proxy freshly started and warmed up the same way (a process that already
//     peaked higher reuses that memory and shows less growth); baton's plain
//     listener on a second daemon, fresh too.
// nginx runs one worker process without a master, HAProxy one thread (baton's
// proxy is one thread too), all on CPU 0 beside the app; the load generator on
// CPU 1. Rounds interleave the three; the median per target is reported.
//
//   node bench/tls.ts [--quick] [--rounds N] [--seconds S] [--no-pin]
// Needs wrk, h2load (nghttp2-client), haproxy, nginx (nginx-light), openssl, slowhttptest.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createDaemon, freePort, waitUntil, type TestDaemon } from '../test/helpers/daemon.ts';
import {
  QUICK, collect, percentile, fixtureService, fmt, machineLine, mb, mdTable, median, onCleanup, pin, pinned, ratio, registerDaemon, rssKb, runBench, runWrk, spawnGroup, wrkBenchOptions, writeDaemonConfig,
} from './lib.ts';

/** Terminal colour codes in a tool's output (ESC [ … letter). */
const TERMINAL_COLOURS = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, 'g');

const { ROUNDS, SECONDS, CONNS, PIN, SERVER_CPU, LOAD_CPU } = wrkBenchOptions();

interface H2Result {
  rps: number;
  failed: number;
  p99Ms: number;
}

let h2logs = 0;
async function runH2load(url: string, seconds: number, cpus: string | null, dir: string): Promise<H2Result> {
  // The same 50 requests in flight as the HTTP/1.1 runs: 5 connections × 10 streams.
  // Its log has one line per request (start, status, microseconds): the p99 comes from there.
  const log = path.join(dir, `h2load-${++h2logs}.log`);
  const [cmd, args] = pinned(cpus, 'h2load', ['-c', String(Math.max(1, Math.round(CONNS / 10))), '-m', '10', '-D', String(seconds), '--warm-up-time=1', `--log-file=${log}`, url]);
  const out = await collect(spawnGroup(cmd, args), (seconds + 30) * 1000, 'h2load');
  const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  const m = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
  if (!Number.isFinite(rps) || m === null) throw new Error(`could not parse h2load output:\n${out}`);
  if (!/Application protocol: h2/.test(out)) throw new Error(`h2load did not negotiate h2:\n${out}`);
  const us = readFileSync(log, 'utf8').split('\n').map((l) => Number(l.split('\t')[2])).filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return { rps, failed: Number(m[2]) + Number(m[3]), p99Ms: us.length === 0 ? NaN : percentile(us, 99) / 1000 };
}

async function main(): Promise<boolean> {
  console.log(`# HTTPS: baton vs nginx vs HAProxy\n\n${machineLine()}\nload average: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  for (const tool of ['wrk', 'h2load', 'haproxy', 'nginx', 'openssl', 'slowhttptest']) {
    if (spawnSync(tool, ['-v'], { stdio: 'ignore' }).error !== undefined) {
      console.error(`tls bench: ${tool} is not installed (apt-get install -y wrk nghttp2-client haproxy nginx-light openssl slowhttptest)`);
      return false;
    }
  }
  const haproxyVersion = /version ([\d.]+)/.exec(spawnSync('haproxy', ['-v']).stdout.toString())?.[1] ?? '?';
  const nginxVersion = /nginx\/([\d.]+)/.exec(spawnSync('nginx', ['-v']).stderr.toString())?.[1] ?? '?';
  console.log(`wrk -t1 -c${CONNS} -d${SECONDS}s; h2load -c${Math.max(1, Math.round(CONNS / 10))} -m10 -D${SECONDS}; ${ROUNDS} interleaved round(s); nginx ${nginxVersion}, 1 worker; HAProxy ${haproxyVersion}, nbthread 1; pinning: ${PIN ? 'load on CPU 1, app + proxies on CPU 0' : 'none'}\n`);

  // One certificate for both, from a throwaway CA.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'baton-bench-tls-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const ssl = (args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'site.key', '-out', 'site.pem', '-days', '2', '-subj', '/CN=bench.test', '-addext', 'subjectAltName=DNS:bench.test,IP:127.0.0.1']);
  writeFileSync(path.join(dir, 'combined.pem'), readFileSync(path.join(dir, 'site.pem'), 'utf8') + readFileSync(path.join(dir, 'site.key'), 'utf8'));

  // A daemon with the TLS listener and one instance of the fixture app; `warm` the URL of a listener to warm up.
  const startBaton = async (): Promise<{ td: TestDaemon; tlsPort: number; instPort: number }> => {
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
    return { td, tlsPort, instPort: inst.port as number };
  };
  // The daemon of the HTTPS figures; nginx and HAProxy forward to its instance.
  const { td, tlsPort, instPort } = await startBaton();
  const inst = { port: instPort };

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
  const haPid = Number(spawnSync('pgrep', ['-f', `haproxy -db -f ${haCfg}`]).stdout.toString().trim().split('\n')[0]);

  // nginx: one process (no master, one worker), HTTP/2 and HTTP/1.1 on the same TLS port, kept-alive upstream
  // connections, its default proxy buffering (memory buffers, then temporary files for a slow client).
  const ngPort = await freePort();
  const ngCfg = path.join(dir, 'nginx.conf');
  writeFileSync(ngCfg, [
    'daemon off;',
    'master_process off;',
    'worker_processes 1;',
    `pid ${path.join(dir, 'nginx.pid')};`,
    `error_log ${path.join(dir, 'nginx-error.log')} warn;`,
    'events { worker_connections 4096; }',
    'http {',
    '  access_log off;',
    `  client_body_temp_path ${path.join(dir, 'ng-body')};`,
    `  proxy_temp_path ${path.join(dir, 'ng-proxy')};`,
    `  fastcgi_temp_path ${path.join(dir, 'ng-fcgi')};`,
    `  uwsgi_temp_path ${path.join(dir, 'ng-uwsgi')};`,
    `  scgi_temp_path ${path.join(dir, 'ng-scgi')};`,
    '  keepalive_requests 1000000;',
    '  keepalive_timeout 60s;',
    `  upstream app { server 127.0.0.1:${inst.port}; keepalive 64; }`,
    '  server {',
    `    listen 127.0.0.1:${ngPort} ssl http2;`,
    `    ssl_certificate ${path.join(dir, 'site.pem')};`,
    `    ssl_certificate_key ${path.join(dir, 'site.key')};`,
    '    ssl_protocols TLSv1.2 TLSv1.3;',
    '    location / {',
    '      proxy_pass http://app;',
    '      proxy_http_version 1.1;',
    '      proxy_set_header Connection "";',
    '      proxy_set_header Host $host;',
    '    }',
    '  }',
    '}',
    '',
  ].join('\n'));
  const [ncmd, nargs] = pinned(SERVER_CPU, 'nginx', ['-c', ngCfg, '-p', dir]);
  const nginxProc = spawnGroup(ncmd, nargs, { stdio: 'ignore' });
  await waitUntil('nginx to listen', async () => {
    const r = spawnSync('curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${ngPort}/`]);
    return r.stdout?.toString() === '200';
  }, 10_000, 100);
  const ngPid = nginxProc.pid!;

  const targets = { baton: `https://127.0.0.1:${tlsPort}/`, nginx: `https://127.0.0.1:${ngPort}/`, haproxy: `https://127.0.0.1:${haPort}/` } as const;
  type Name = keyof typeof targets;

  // Slow read first, on processes that have only been warmed up (3 s of wrk, 10 connections, on the listener attacked).
  const slowRead = async (url: string, pid: number): Promise<{ before: number; peak: number; connected: number }> => {
    await runWrk(url, { connections: 10, seconds: 3, cpus: LOAD_CPU });
    const before = rssKb(pid) ?? NaN;
    let peak = before;
    const timer = setInterval(() => (peak = Math.max(peak, rssKb(pid) ?? 0)), 250);
    const [cmd, args] = pinned(LOAD_CPU, 'slowhttptest', ['-X', '-c', '500', '-r', '250', '-w', '512', '-y', '1024', '-n', '5', '-z', '32', '-k', '3', '-l', String(QUICK ? 8 : 20), '-p', '5', '-u', `${url}download?bytes=524288`]);
    const out = (await collect(spawnGroup(cmd, args), 120_000, 'slowhttptest')).replace(TERMINAL_COLOURS, '');
    clearInterval(timer);
    const connected = Math.max(0, ...[...out.matchAll(/connected:\s+(\d+)/g)].map((m) => Number(m[1])));
    return { before, peak, connected };
  };
  const sr = {
    baton: await slowRead(targets.baton, td.proc.pid!),
    nginx: await slowRead(targets.nginx, ngPid),
    haproxy: await slowRead(targets.haproxy, haPid),
    // Plain HTTP through a second, fresh daemon tells TLS's share from the proxy's own buffering
    // (left idle until the end: its cleanup is registered).
    'baton-plain': await (async () => {
      const other = await startBaton();
      return slowRead(`${other.td.url}/`, other.td.proc.pid!);
    })(),
  };
  const srLabel = { baton: 'baton, HTTPS', nginx: `nginx ${nginxVersion}, HTTPS`, haproxy: `HAProxy ${haproxyVersion}, HTTPS`, 'baton-plain': 'baton, plain HTTP (another fresh daemon)' } as const;
  console.log(`slow read (slowhttptest -X, 500 connections, 512 KiB × 3 pipelined responses), RSS of each proxy process:\n\n${mdTable([
    ['', 'RSS before', 'RSS peak', 'growth', 'connections held', 'growth per connection'],
    ...(['baton', 'nginx', 'haproxy', 'baton-plain'] as const).map((n) => [srLabel[n], `${mb(sr[n].before)} MB`, `${mb(sr[n].peak)} MB`, `${mb(sr[n].peak - sr[n].before)} MB`, String(sr[n].connected), sr[n].connected > 0 ? `${fmt((sr[n].peak - sr[n].before) / sr[n].connected, 0)} kB` : '-']),
  ])}\n`);
  const names = Object.keys(targets) as Name[];
  const h1 = Object.fromEntries(names.map((n) => [n, { rps: [] as number[], p99: [] as number[], errors: 0 }])) as Record<Name, { rps: number[]; p99: number[]; errors: number }>;
  const h2 = Object.fromEntries(names.map((n) => [n, { rps: [] as number[], p99: [] as number[], errors: 0 }])) as Record<Name, { rps: number[]; p99: number[]; errors: number }>;
  const hs = Object.fromEntries(names.map((n) => [n, { rps: [] as number[], errors: 0 }])) as Record<Name, { rps: number[]; errors: number }>;
  // Reference: baton's plain HTTP listener, same daemon, same app (what TLS costs baton).
  const plain: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const p = await runWrk(`${td.url}/`, { connections: CONNS, seconds: SECONDS, cpus: LOAD_CPU });
    plain.push(p.rps);
    console.log(`round ${round + 1} baton plain HTTP: ${fmt(p.rps, 0)} req/s (p99 ${fmt(p.p99Ms)} ms)`);
    // A rotating order: no proxy always runs first (or last) in a round.
    for (const name of names.map((_, i) => names[(i + round) % names.length]!)) {
      const url = targets[name];
      const a = await runWrk(url, { connections: CONNS, seconds: SECONDS, cpus: LOAD_CPU });
      h1[name].rps.push(a.rps);
      h1[name].p99.push(a.p99Ms);
      h1[name].errors += a.non2xx + a.socketErrors;
      const b = await runH2load(url, SECONDS, LOAD_CPU, dir);
      h2[name].rps.push(b.rps);
      h2[name].p99.push(b.p99Ms);
      h2[name].errors += b.failed;
      const c = await runWrk(url, { connections: 10, seconds: SECONDS, cpus: LOAD_CPU, headers: { connection: 'close' } });
      hs[name].rps.push(c.rps);
      hs[name].errors += c.non2xx + c.socketErrors;
      console.log(`round ${round + 1} ${name}: h1 ${fmt(a.rps, 0)} req/s (p99 ${fmt(a.p99Ms)} ms), h2 ${fmt(b.rps, 0)} req/s (p99 ${fmt(b.p99Ms)} ms), handshakes ${fmt(c.rps, 0)}/s; load ${os.loadavg()[0]!.toFixed(1)}`);
    }
  }
  const med = (xs: number[]): number => median(xs);
  const row = (label: string, m: Record<Name, number>, unit: string, digits = 0): (string | number)[] => [label, ...names.map((n) => `${fmt(m[n], digits)} ${unit}`), ratio(m.baton, m.nginx), ratio(m.baton, m.haproxy)];
  const of = (f: (n: Name) => number): Record<Name, number> => Object.fromEntries(names.map((n) => [n, f(n)])) as Record<Name, number>;
  console.log(`\n${mdTable([
    ['', 'baton', `nginx ${nginxVersion}`, `HAProxy ${haproxyVersion}`, 'baton / nginx', 'baton / HAProxy'],
    ['plain HTTP/1.1 keep-alive through baton (reference)', `${fmt(med(plain), 0)} req/s`, '-', '-', '-', '-'],
    row('HTTPS/1.1 keep-alive', of((n) => med(h1[n].rps)), 'req/s'),
    row('HTTPS/1.1 p99', of((n) => med(h1[n].p99)), 'ms', 2),
    row('HTTP/2 (5 connections × 10 streams)', of((n) => med(h2[n].rps)), 'req/s'),
    row('HTTP/2 p99', of((n) => med(h2[n].p99)), 'ms', 2),
    row('new TLS connection per request', of((n) => med(hs[n].rps)), '/s'),
  ])}`);
  console.log(`load average at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);

  const errors = h1.baton.errors + h2.baton.errors + hs.baton.errors;
  console.log(`\nerrors through baton: ${errors} (nginx: ${h1.nginx.errors + h2.nginx.errors + hs.nginx.errors}, HAProxy: ${h1.haproxy.errors + h2.haproxy.errors + hs.haproxy.errors})`);
  return errors === 0;
}

await runBench('tls', 15 * 60_000, main);
