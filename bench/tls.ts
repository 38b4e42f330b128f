// HTTPS throughput through baton against nginx and HAProxy, in one run, with the
// same certificate (ECDSA P-256) and the same single app process (the fixture
// app, started by a real baton daemon as its instance):
//   - HTTPS/1.1 keep-alive (wrk -c50), p99 from wrk --latency;
//   - HTTP/2 (h2load -c5 -m10: 5 connections × 10 streams, the same 50 in flight);
//   - handshakes: HTTPS/1.1 with Connection: close (wrk), a new TLS
//     handshake per request;
//   - slow readers: each proxy's RSS before and at its peak under HTTP/1.1
//     slow reads (slowhttptest -X, 500 connections reading 512 KiB responses
//     slowly; and bench/h1-slow-client.ts: the same from Node's own TLS
//     client, whose ClientHello is a current browser's size) and HTTP/2 ones
//     (bench/h2-slow-client.ts: 5 connections × 100 streams paused, so the
//     client's flow-control window stays closed).
//     Measured first, each proxy freshly started and warmed up the same way (a
//     process that already peaked higher reuses that memory and shows less
//     growth); baton's plain listener on another fresh daemon. With --before
//     REF, the same on a daemon built from this checkout with the files of
//     --before-files as they were at REF (before/after in one run).
// nginx runs one worker process without a master, HAProxy one thread (baton's
// proxy is one thread too), all on CPU 0 beside the app; the load generator on
// CPU 1. Rounds interleave the three; the median per target is reported.
//
//   node bench/tls.ts [--quick] [--rounds N] [--seconds S] [--no-pin] [--slow-rounds N] [--before REF [--before-files a,b]] [--h2-slow C:S]
// Needs wrk, h2load (nghttp2-client), haproxy, nginx (nginx-light), openssl, slowhttptest.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createDaemon, freePort, waitUntil, type TestDaemon } from '../test/helpers/daemon.ts';
import {
  QUICK, ROOT, collect, percentile, fixtureService, fmt, machineLine, mb, mdTable, median, onCleanup, pin, pinned, ratio, rssKb, runBench, runWrk, spawnGroup, wrkBenchOptions, writeDaemonConfig,
} from './lib.ts';

/** Terminal colour codes in a tool's output (ESC [ … letter). */
const TERMINAL_COLOURS = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, 'g');

// This bench's own options, taken out before the shared (strict) option parser sees the rest:
//   --slow-rounds N   slow-reader measurements per baton variant, each on a fresh daemon (median reported; default 1; 0: none)
//   --before REF      also measure a "before" daemon: this checkout (HEAD) with --before-files as they were at REF
//   --before-files F  comma-separated paths (default src/proxy/listeners.ts)
//   --h2-slow C:S     HTTP/2 slow readers: C connections × S paused streams (default 5:100)
const OWN = ['--slow-rounds', '--before', '--before-files', '--h2-slow'];
const own: Record<string, string> = {};
for (let i = 2; i < process.argv.length; i++) {
  const [name, inline] = process.argv[i]!.split('=', 2) as [string, string | undefined];
  if (!OWN.includes(name)) continue;
  own[name] = inline ?? process.argv[i + 1] ?? '';
  process.argv.splice(i, inline === undefined ? 2 : 1);
  i--;
}
const SLOW_ROUNDS = Number(own['--slow-rounds'] ?? 1);
const BEFORE = own['--before'];
const BEFORE_FILES = (own['--before-files'] ?? 'src/proxy/listeners.ts').split(',');
const [h2c, h2s] = (own['--h2-slow'] ?? '5:100').split(':').map(Number);
const H2_SLOW = { connections: h2c ?? 5, streams: h2s ?? 100 };

const { ROUNDS, SECONDS, CONNS, PIN, SERVER_CPU, LOAD_CPU } = wrkBenchOptions();

interface SlowResult {
  before: number;
  peak: number;
  /** Connections (HTTP/1.1) or streams (HTTP/2) the slow readers held. */
  held: number;
}

/**
 * A copy of this checkout's committed tree (HEAD) with BEFORE_FILES as they were at BEFORE, built: the
 * "before" daemon of the same run. Its bin/baton.js.
 */
function beforeCheckout(dir: string): string {
  const root = path.join(dir, 'before');
  mkdirSync(root);
  execFileSync('sh', ['-c', `git -C "${ROOT}" archive HEAD | tar -x -C "${root}"`]);
  for (const f of BEFORE_FILES) writeFileSync(path.join(root, f), execFileSync('git', ['-C', ROOT, 'show', `${BEFORE}:${f}`]));
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(root, 'node_modules'));
  execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'ignore' });
  return path.join(root, 'bin/baton.js');
}

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
  const startBaton = async (bin?: string): Promise<{ td: TestDaemon; tlsPort: number; instPort: number; stop: () => Promise<void> }> => {
    const td = await createDaemon({ start: false, bin });
    const unregister = onCleanup(() => td.cleanup());
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
    return { td, tlsPort, instPort: inst.port as number, stop: async () => {
      unregister();
      await td.cleanup();
    } };
  };
  // The daemon of the HTTPS figures; nginx and HAProxy forward to its instance.
  const { td, tlsPort, instPort } = await startBaton();
  const inst = { port: instPort };

  // HAProxy on a port of its own; `n` names its files (a fresh process for each measurement that needs one).
  const startHaproxy = async (n: number): Promise<{ port: number; pid: number }> => {
  const haPort = await freePort();
  const haCfg = path.join(dir, `haproxy-${n}.cfg`);
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
  return { port: haPort, pid: Number(spawnSync('pgrep', ['-f', `haproxy -db -f ${haCfg}`]).stdout.toString().trim().split('\n')[0]) };
  };
  const { port: haPort, pid: haPid } = await startHaproxy(1);

  // nginx: one process (no master, one worker), HTTP/2 and HTTP/1.1 on the same TLS port, kept-alive upstream
  // connections, its default proxy buffering (memory buffers, then temporary files for a slow client).
  const startNginx = async (n: number): Promise<{ port: number; pid: number }> => {
  const ngPort = await freePort();
  const ngCfg = path.join(dir, `nginx-${n}.conf`);
  writeFileSync(ngCfg, [
    'daemon off;',
    'master_process off;',
    'worker_processes 1;',
    `pid ${path.join(dir, `nginx-${n}.pid`)};`,
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
  return { port: ngPort, pid: nginxProc.pid! };
  };
  const { port: ngPort, pid: ngPid } = await startNginx(1);

  const targets = { baton: `https://127.0.0.1:${tlsPort}/`, nginx: `https://127.0.0.1:${ngPort}/`, haproxy: `https://127.0.0.1:${haPort}/` } as const;
  type Name = keyof typeof targets;

  // Slow readers first, on processes that have only been warmed up (3 s of wrk, 10 connections, on the listener
  // attacked): HTTP/1.1 (slowhttptest -X) and HTTP/2 (bench/h2-slow-client.ts: paused streams), RSS peak of the process.
  type SlowKind = 'h1' | 'h1node' | 'h2';
  const slowRead = async (url: string, pid: number, kind: SlowKind): Promise<SlowResult> => {
    await runWrk(url, { connections: 10, seconds: 3, cpus: LOAD_CPU });
    const before = rssKb(pid) ?? NaN;
    let peak = before;
    const timer = setInterval(() => (peak = Math.max(peak, rssKb(pid) ?? 0)), 250);
    const download = `${url}download?bytes=524288`;
    const [cmd, args] = kind === 'h1'
      ? pinned(LOAD_CPU, 'slowhttptest', ['-X', '-c', '500', '-r', '250', '-w', '512', '-y', '1024', '-n', '5', '-z', '32', '-k', '3', '-l', String(QUICK ? 8 : 20), '-p', '5', '-u', download])
      : kind === 'h1node'
        ? pinned(LOAD_CPU, process.execPath, [path.join(import.meta.dirname, 'h1-slow-client.ts'), download, path.join(dir, 'site.pem'), 'bench.test', '500', String(QUICK ? 8 : 20)])
        : pinned(LOAD_CPU, process.execPath, [path.join(import.meta.dirname, 'h2-slow-client.ts'), download, path.join(dir, 'site.pem'), 'bench.test', String(H2_SLOW.connections), String(H2_SLOW.streams), String(QUICK ? 8 : 20)]);
    const out = (await collect(spawnGroup(cmd, args), 120_000, kind === 'h1' ? 'slowhttptest' : `the ${kind === 'h1node' ? 'HTTP/1.1' : 'HTTP/2'} slow readers`)).replace(TERMINAL_COLOURS, '');
    clearInterval(timer);
    const held = kind === 'h1'
      ? Math.max(0, ...[...out.matchAll(/connected:\s+(\d+)/g)].map((m) => Number(m[1])))
      : (JSON.parse(/^\{.*\}$/m.exec(out)?.[0] ?? '{"answered":0}') as { answered: number }).answered;
    return { before, peak, held };
  };
  // Each baton measurement on a fresh daemon (this checkout's, and the "before" one), `SLOW_ROUNDS` times; the median growth is reported.
  const batonSlow = async (bin: string | undefined, kind: SlowKind, plain = false): Promise<SlowResult[]> => {
    const rounds: SlowResult[] = [];
    for (let i = 0; i < (plain ? 1 : SLOW_ROUNDS); i++) {
      const b = await startBaton(bin);
      rounds.push(await slowRead(plain ? `${b.td.url}/` : `https://127.0.0.1:${b.tlsPort}/`, b.td.proc.pid!, kind));
      await b.stop();
    }
    return rounds;
  };
  const beforeBin = BEFORE === undefined ? undefined : beforeCheckout(dir);
  const slowRows: (string | number)[][] = [];
  const addRows = (label: string, rs: SlowResult[]): void => {
    const growth = rs.map((r) => r.peak - r.before);
    const perHeld = rs.map((r) => (r.held > 0 ? (r.peak - r.before) / r.held : NaN));
    const m = rs.length === 1 ? 0 : growth.indexOf([...growth].sort((x, y) => x - y)[Math.floor(growth.length / 2)]!);
    slowRows.push([label, `${mb(rs[m]!.before)} MB`, `${mb(rs[m]!.peak)} MB`, `${mb(growth[m]!)} MB`, String(rs[m]!.held), Number.isFinite(perHeld[m]) ? `${fmt(perHeld[m]!, 0)} kB` : '-', rs.length > 1 ? growth.map((g) => mb(g)).join(' / ') : '']);
  };
  // --slow-rounds 0: the throughput rounds only (for a quiet moment of the machine).
  for (const kind of SLOW_ROUNDS === 0 ? [] : (['h1', 'h1node', 'h2'] as const)) {
    const what = kind === 'h1' ? 'HTTP/1.1' : kind === 'h1node' ? "HTTP/1.1 from Node's client" : 'HTTP/2';
    addRows(`baton, ${what} over TLS`, await batonSlow(undefined, kind));
    if (beforeBin !== undefined) addRows(`baton before (${BEFORE}: ${BEFORE_FILES.join(', ')}), ${what} over TLS`, await batonSlow(beforeBin, kind));
    // nginx and HAProxy: the processes of the throughput rounds for slowhttptest (fresh), fresh ones for the others.
    const n = kind === 'h1' ? 1 : kind === 'h1node' ? 2 : 3;
    addRows(`nginx ${nginxVersion}, ${what} over TLS`, [kind === 'h1' ? await slowRead(targets.nginx, ngPid, kind) : await (async () => { const ng = await startNginx(n); return slowRead(`https://127.0.0.1:${ng.port}/`, ng.pid, kind); })()]);
    addRows(`HAProxy ${haproxyVersion}, ${what} over TLS`, [kind === 'h1' ? await slowRead(targets.haproxy, haPid, kind) : await (async () => { const h = await startHaproxy(n); return slowRead(`https://127.0.0.1:${h.port}/`, h.pid, kind); })()]);
  }
  // Plain HTTP through a fresh daemon tells TLS's share from the proxy's own buffering.
  if (SLOW_ROUNDS > 0) addRows('baton, plain HTTP/1.1', await batonSlow(undefined, 'h1', true));
  if (SLOW_ROUNDS > 0) console.log(`slow readers, RSS of each proxy process (HTTP/1.1: slowhttptest -X, 500 connections, 512 KiB × 3 pipelined responses; HTTP/1.1 from Node's client: bench/h1-slow-client.ts, 500 connections, one 512 KiB response each, paused after its first bytes; HTTP/2: ${H2_SLOW.connections} connections × ${H2_SLOW.streams} paused streams of 512 KiB); baton: median of ${SLOW_ROUNDS} fresh daemon(s):\n\n${mdTable([
    ['', 'RSS before', 'RSS peak', 'growth', 'held', 'growth per held', 'growth per round'],
    ...slowRows,
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

// The slow-reader rounds alone take ~35 s per fresh daemon (--slow-rounds 3 --before REF: ~15 min).
await runBench('tls', 45 * 60_000, main);
