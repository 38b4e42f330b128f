// Shared pieces of the benchmarks: process-group bookkeeping (everything a bench
// starts is killed at the end, on failure and on Ctrl-C too), CPU pinning, wrk and
// the open-loop client as pinned child processes, RSS, and table printing.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import path from 'node:path';
import type { TestDaemon } from '../test/helpers/daemon.ts';

export const BENCH_DIR = import.meta.dirname;
export const ROOT = path.resolve(BENCH_DIR, '..');
export const QUICK = process.argv.includes('--quick');

// ---- cleanup -------------------------------------------------------------

type Cleanup = () => Promise<void> | void;
const cleanups: Cleanup[] = [];
const groups = new Set<number>();

/** Run `fn` (newest first) when the bench ends, however it ends. Returns an unregister function. */
export function onCleanup(fn: Cleanup): () => void {
  cleanups.push(fn);
  return () => {
    const i = cleanups.indexOf(fn);
    if (i >= 0) cleanups.splice(i, 1);
  };
}

function killGroup(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // gone already
  }
}

/** Spawn a child in its own process group; it is killed (the whole group) at cleanup. */
/**
 * BATON_BENCH_NICE=N (root, e.g. -15): the CPU weight of every process the bench
 * starts or pins, and its own, against the rest of the machine (other
 * engineers' tests on the same 2 cores). A process spawned in a session of its
 * own is an autogroup of its own, and the scheduler shares a CPU between
 * autogroups by their nice value (/proc/PID/autogroup). Every target (baton,
 * nginx, HAProxy, the app, the load generator) gets the same weight.
 */
const BENCH_NICE = process.env['BATON_BENCH_NICE'];

export function weigh(pid: number): void {
  if (BENCH_NICE === undefined) return;
  try {
    writeFileSync(`/proc/${pid}/autogroup`, BENCH_NICE);
  } catch (err) {
    console.log(`BATON_BENCH_NICE: ${pid}: ${(err as Error).message}`);
  }
}
weigh(process.pid);

export function spawnGroup(cmd: string, args: string[], opts: { stdio?: 'pipe' | 'ignore' | 'inherit'; env?: NodeJS.ProcessEnv; cwd?: string; outFd?: number } = {}): ChildProcess {
  const stdio = opts.stdio ?? 'pipe';
  // outFd: stdout and stderr to this open file.
  const c = spawn(cmd, args, { detached: true, stdio: opts.outFd !== undefined ? ['ignore', opts.outFd, opts.outFd] : stdio === 'pipe' ? ['ignore', 'pipe', 'pipe'] : stdio, env: opts.env ?? process.env, cwd: opts.cwd ?? ROOT });
  if (c.pid !== undefined) weigh(c.pid);
  // The group stays in the set after the leader exits (it may still hold children):
  // cleanup kills it, a no-op once it is empty.
  if (c.pid !== undefined) groups.add(c.pid);
  return c;
}

/** A daemon from test/helpers/daemon.ts whose cleanup (daemon, instances) runs at the end. */
export function registerDaemon(td: TestDaemon): void {
  let done = false;
  onCleanup(async () => {
    if (done) return;
    done = true;
    await td.cleanup();
  });
}

let cleaning: Promise<void> | null = null;
export function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length) {
      const fn = cleanups.pop()!;
      try {
        await fn();
      } catch (e) {
        console.error(`cleanup: ${(e as Error).message}`);
      }
    }
    for (const pid of groups) killGroup(pid);
    groups.clear();
  })();
  return cleaning;
}

/**
 * Run a bench's main with a hard time bound; clean up on success, failure,
 * SIGINT/SIGTERM and the time bound. Sets the exit code (1 = a target missed or failed).
 */
export async function runBench(name: string, hardLimitMs: number, main: () => Promise<boolean>): Promise<void> {
  const bail = async (why: string, code: number): Promise<never> => {
    console.error(`\n${name}: ${why}; cleaning up`);
    await cleanupAll();
    process.exit(code);
  };
  process.once('SIGINT', () => void bail('interrupted', 130));
  process.once('SIGTERM', () => void bail('terminated', 143));
  const watchdog = setTimeout(() => void bail(`hard time limit of ${Math.round(hardLimitMs / 1000)} s reached`, 2), hardLimitMs);
  watchdog.unref();
  let ok = false;
  try {
    ok = await main();
  } catch (e) {
    console.error(`\n${name} FAILED: ${(e as Error).stack ?? String(e)}`);
    ok = false;
  } finally {
    await cleanupAll();
    clearTimeout(watchdog);
  }
  process.exitCode = ok ? 0 : 1;
}

/** The daemon's young-generation flag as bin/baton.js sets it (a daemon started with it is not re-executed). */
export const DAEMON_SEMI_SPACE = '--max-semi-space-size=4';

// ---- machine -------------------------------------------------------------

export function machineLine(): string {
  const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  return `${new Date().toISOString()}  nproc ${os.availableParallelism()}  ${os.cpus()[0]?.model ?? '?'}  node ${process.version}  load avg ${load}`;
}

export const hasTaskset = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0;
export const NCPU = os.availableParallelism();

/** Pin a process and all its threads to the given CPU list (e.g. "0"); no-op without taskset or with 1 CPU. */
export function pin(pid: number, cpus: string): boolean {
  weigh(pid);
  if (!hasTaskset || NCPU < 2) return false;
  return spawnSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' }).status === 0;
}

/** Prefix a command with taskset when pinning is possible. */
export function pinned(cpus: string | null, cmd: string, args: string[]): [string, string[]] {
  if (cpus === null || !hasTaskset || NCPU < 2) return [cmd, args];
  return ['taskset', ['-c', cpus, cmd, ...args]];
}

/** Cumulative times of one CPU from /proc/stat, in clock ticks: total, and steal (taken by the hypervisor). */
export function cpuTicks(cpu: number): { total: number; steal: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${cpu} `));
    const f = line!.trim().split(/\s+/).slice(1).map(Number);
    return { total: f.slice(0, 8).reduce((a, b) => a + b, 0), steal: f[7] ?? 0 };
  } catch {
    return { total: NaN, steal: NaN };
  }
}

/** VmRSS of a process in kB (null if gone). */
export function rssKb(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

export const mb = (kb: number | null): string => (kb === null ? '-' : (kb / 1024).toFixed(1));

// ---- daemon config -------------------------------------------------------

/** Rewrite a test daemon's baton.yaml with another log level (the harness writes debug). */
export function writeDaemonConfig(td: TestDaemon, services: string, logLevel: 'debug' | 'info' = 'info', top: string[] = []): void {
  writeFileSync(td.configFile, [`listen: ["127.0.0.1:${td.port}"]`, 'state_dir: ./state', `log_level: ${logLevel}`, ...top, 'services:', services, ''].join('\n'));
}

/** utime+stime of a process, in ms (clock ticks are 10 ms on Linux); NaN once it is gone. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}

/** A service of the fixture app (like serviceYaml in the harness, with optional hosts and health interval). */
export function fixtureService(name: string, opts: { instances: number; hosts?: string[]; healthInterval?: string; extra?: string[] }): string {
  return [
    `  ${name}:`,
    `    command: exec "${process.execPath}" server.mjs`,
    `    instances: ${opts.instances}`,
    ...(opts.hosts ? [`    hosts: [${opts.hosts.join(', ')}]`] : []),
    `    health: { path: /healthz, interval: ${opts.healthInterval ?? '1s'}, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 2, start_timeout: 10s }`,
    '    drain_timeout: 5s',
    '    stop_timeout: 3s',
    ...(opts.extra ?? []).map((l) => `    ${l}`),
  ].join('\n');
}

/** Run a deploy/rollback through the CLI with --json; returns the outcome line and the wall time. */
export async function cliOperation(td: TestDaemon, args: string[], timeoutMs = 60_000): Promise<{ outcome: any; wallMs: number; code: number | null; output: string }> {
  const t0 = performance.now();
  const r = await td.cli([...args, '--json'], timeoutMs);
  const wallMs = performance.now() - t0;
  let outcome: any = null;
  for (const line of r.stdout.split('\n')) {
    if (!line.trim()) continue;
    try {
      const l = JSON.parse(line);
      if (l.type === 'result') outcome = l.outcome;
    } catch {
      // not a JSON line
    }
  }
  return { outcome, wallMs, code: r.code, output: r.stdout + r.stderr };
}

// ---- wrk -----------------------------------------------------------------

export const hasWrk = spawnSync('wrk', ['-v'], { stdio: 'ignore' }).error === undefined;
export const WRK_MISSING = 'wrk is not installed: `apt-get update && apt-get install -y wrk` (Debian/Ubuntu)';

export interface WrkResult {
  rps: number;
  requests: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  non2xx: number;
  socketErrors: number;
  raw: string;
}

function toMs(v: string, unit: string): number {
  const x = Number(v);
  if (unit === 'us') return x / 1000;
  if (unit === 's') return x * 1000;
  if (unit === 'm') return x * 60_000;
  return x;
}

export function parseWrk(out: string): WrkResult {
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
    return m ? toMs(m[1]!, m[2]!) : NaN;
  };
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = se ? se.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  return { rps, requests, p50Ms: pct('50'), p90Ms: pct('90'), p99Ms: pct('99'), non2xx, socketErrors, raw: out };
}

/** Run wrk (pinned to `cpus`) and parse its output. */
export async function runWrk(url: string, o: { connections: number; seconds: number; cpus: string | null; headers?: Record<string, string>; script?: string }): Promise<WrkResult> {
  const args = ['-t1', `-c${o.connections}`, `-d${o.seconds}s`, '--latency', '--timeout', '5s'];
  for (const [k, v] of Object.entries(o.headers ?? {})) args.push('-H', `${k}: ${v}`);
  if (o.script !== undefined) args.push('-s', o.script);
  args.push(url);
  const [cmd, a] = pinned(o.cpus, 'wrk', args);
  const out = await collect(spawnGroup(cmd, a), (o.seconds + 20) * 1000, 'wrk');
  const r = parseWrk(out);
  if (!Number.isFinite(r.rps)) throw new Error(`could not parse wrk output:\n${out}`);
  return r;
}

/** Wait for a child's exit (bounded), returning its stdout; throws with stderr on failure. */
export function collect(c: ChildProcess, timeoutMs: number, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    c.stdout?.on('data', (d) => (out += d));
    c.stderr?.on('data', (d) => (err += d));
    const t = setTimeout(() => {
      killGroup(c.pid!);
      reject(new Error(`${what} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    c.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    // 'close', not 'exit': the exit can be seen before the last of stdout is read.
    c.on('close', (code) => {
      clearTimeout(t);
      if (code === 0) resolve(out);
      else reject(new Error(`${what} exited with ${code}: ${err || out}`));
    });
  });
}

// ---- open-loop (rate-limited) client ---------------------------------------

export interface OpenLoopResult {
  rate: number; // asked
  achievedRps: number;
  sent: number;
  completed: number;
  errors: number;
  non2xx: number;
  unfinished: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The longest gap between two of the generator's 1 ms ticks in the measured window. */
  generatorMaxGapMs: number;
  /** With `slowMs`: [wall-clock ms, slowest latency ms] of each 100 ms window of scheduled time with a request at least that slow. */
  slowWindows?: [number, number][];
}

/** Run bench/openloop.ts as a pinned child: a fixed request rate over `connections` keep-alive connections. */
export async function runOpenLoop(url: string, o: { rate: number; seconds: number; connections: number; cpus: string | null; warmupSeconds?: number; slowMs?: number; nice?: number }): Promise<OpenLoopResult> {
  const args = [
    '--no-warnings',
    path.join(BENCH_DIR, 'openloop.ts'),
    '--url', url,
    '--rate', String(Math.round(o.rate)),
    '--seconds', String(o.seconds),
    '--connections', String(o.connections),
    '--warmup', String(o.warmupSeconds ?? 1),
    ...(o.slowMs === undefined ? [] : ['--slow-ms', String(o.slowMs)]),
    ...(o.nice === undefined ? [] : [`--nice=${o.nice}`]),
  ];
  const [cmd, a] = pinned(o.cpus, process.execPath, args);
  const out = await collect(spawnGroup(cmd, a), (o.seconds + (o.warmupSeconds ?? 1) + 30) * 1000, 'openloop');
  return JSON.parse(out.trim().split('\n').pop()!) as OpenLoopResult;
}

// ---- numbers and tables ----------------------------------------------------

export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export const fmt = (x: number, digits = 2): string => (Number.isFinite(x) ? x.toFixed(digits) : '-');
export const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}x` : '-');

/** A Markdown table (also readable on a terminal). */
export function mdTable(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map(String));
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(cells[0]!), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...cells.slice(1).map(line)].join('\n');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function verdict(ok: boolean): string {
  return ok ? 'PASS' : 'MISS';
}

// ---- what the daemon runs, deployment history ------------------------------

/** Whether bin/baton.js will run the compiled dist/ (fresh) or the TypeScript sources (same rule as bin/baton.js). */
export function daemonCode(): 'dist' | 'sources (dist/ missing or stale: run `npm run build`)' {
  const stale = 'sources (dist/ missing or stale: run `npm run build`)' as const;
  const stamp = path.join(ROOT, 'dist/.built');
  let built: number;
  try {
    built = statSync(stamp).mtimeMs;
  } catch {
    return stale;
  }
  const src = path.join(ROOT, 'src');
  for (const f of readdirSync(src, { recursive: true })) {
    if (statSync(path.join(src, String(f))).mtimeMs > built) return stale;
  }
  return 'dist';
}

export interface HistoryEvent {
  at: number;
  step: string;
  level: string;
  message: string;
  durationMs: number | null;
}

export interface Deployment {
  id: number;
  kind: string;
  fromRelease: string | null;
  toRelease: string;
  state: string;
  startedAt: number;
  finishedAt: number | null;
  error: string | null;
  events?: HistoryEvent[];
}

/** `baton history SERVICE [ID] --json`: the deployments (newest first) with their events. */
export async function history(td: TestDaemon, service: string, id?: number): Promise<Deployment[]> {
  const r = await td.cli(['history', service, ...(id === undefined ? [] : [String(id)]), '--json'], 20_000);
  if (r.code !== 0) throw new Error(`baton history failed: ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout) as Deployment[];
}

/** Options shared by the wrk benches (proxy.ts, canary.ts): rounds, seconds, connections, CPU pinning. */
export function wrkBenchOptions(): { ROUNDS: number; SECONDS: number; CONNS: number; PIN: boolean; SERVER_CPU: string | null; LOAD_CPU: string | null; WORKERS: number } {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      'no-pin': { type: 'boolean', default: false },
      connections: { type: 'string', default: '50' },
      // bench/proxy.ts: also a daemon with `proxy.workers: N` (N > 1), measured in the same rounds.
      workers: { type: 'string', default: '1' },
    },
  });
  const PIN = !values['no-pin'] && hasTaskset && NCPU >= 2;
  return {
    ROUNDS: Number(values.rounds ?? (QUICK ? 1 : 3)),
    SECONDS: Number(values.seconds ?? (QUICK ? 3 : 10)),
    CONNS: Number(values.connections),
    PIN,
    SERVER_CPU: PIN ? '0' : null,
    LOAD_CPU: PIN ? '1' : null,
    WORKERS: Number(values.workers),
  };
}

/**
 * BATON_BENCH_PEER_XFF_ONLY=1: nginx and HAProxy send X-Forwarded-For alone, as
 * before section 22; by default they send the four forwarding fields baton sends
 * (X-Forwarded-For, -Proto, -Host, Forwarded) and the Host as the client sent it,
 * so that the app behind each does the same work: the app's reading of three more
 * fields was otherwise charged to baton alone on the shared core.
 */
export const PEER_XFF_ONLY = process.env['BATON_BENCH_PEER_XFF_ONLY'] === '1';

/** nginx, one worker process (no master), proxying to `app` with keep-alive upstream connections. */
export function nginxConfig(dir: string, port: number, app: URL): string {
  const forwarding = PEER_XFF_ONLY
    ? 'proxy_set_header Host $host;\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;'
    : [
        'proxy_set_header Host $http_host;',
        'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
        'proxy_set_header X-Forwarded-Proto $scheme;',
        'proxy_set_header X-Forwarded-Host $http_host;',
        'proxy_set_header Forwarded "for=$remote_addr;host=\\"$http_host\\";proto=$scheme";',
      ].join('\n      ');
  return `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  upstream app { server ${app.host}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      ${forwarding}
    }
  }
}
`;
}
