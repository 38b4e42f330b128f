// Test harness: a real baton daemon in a temp directory, driven through the
// real CLI, with releases made from the fixture app. Everything it starts is
// stopped in cleanup, instances included (by process group).

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile, readFile } from 'node:fs/promises';
import { existsSync, openSync, closeSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { settlesWithin } from './timeouts.ts';
import { freePort, HeldListeners, type BatonListenerRole } from './ports.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BATON_JS = path.join(ROOT, 'bin/baton.js');
const FIXTURE_APP = path.join(ROOT, 'test/fixtures/app.mjs');

// The ports of the daemons started here are held from choice to use (test/helpers/ports.ts).
export { freePort };

export async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface TestDaemon {
  dir: string;
  /** The proxy's port (final once start() has succeeded the first time). */
  port: number;
  url: string;
  /** The metrics listener's port, with `metrics: true`. */
  metricsPort: number | null;
  configFile: string;
  proc: ChildProcess;
  cli(args: string[], timeoutMs?: number): Promise<CliResult>;
  status(service?: string): Promise<any>;
  /** Make a release directory of the fixture app answering with `version`. */
  release(version: string, env?: Record<string, string>): Promise<string>;
  start(): Promise<void>;
  /**
   * A port for one more listener of this daemon (`tls`, `agent-check`, …), for
   * the test to write into the config: its socket is bound now and handed to the
   * daemon at its next start, so no other process can take the port meanwhile.
   */
  holdPort(role: BatonListenerRole, host?: string): Promise<number>;
  kill9(): Promise<void>;
  /** Rewrite baton.yaml with these services (listen, state_dir, log_level and metrics_listen stay as the harness set them). */
  writeConfig(services: string): Promise<void>;
  daemonLog(): Promise<string>;
  cleanup(): Promise<void>;
}

export function serviceYaml(opts: { name?: string; instances?: number; extra?: string } = {}): string {
  return [
    `  ${opts.name ?? 'web'}:`,
    `    command: exec "${process.execPath}" server.mjs`,
    `    instances: ${opts.instances ?? 2}`,
    '    health: { path: /healthz, interval: 200ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 2, start_timeout: 10s }',
    '    drain_timeout: 5s',
    '    stop_timeout: 3s',
    ...(opts.extra ? opts.extra.split('\n').map((l) => `    ${l}`) : []),
  ].join('\n');
}

/**
 * Run `use` with a free port, for a port a child process (the daemon) binds:
 * when `use` fails because the port was taken before the child bound it (its
 * error mentions EADDRINUSE, as a failed `baton reload` or start does), try
 * again with another port.
 */
export async function withFreePort<T>(use: (port: number) => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return await use(port);
    } catch (err) {
      const text = err instanceof Error ? `${err.message}\n${err.stack ?? ''}` : String(err);
      if (attempt >= attempts || !text.includes('EADDRINUSE')) throw err;
    }
  }
}

/** The daemon could not bind a port: another process took it between its choice and the daemon's bind. */
class PortTaken extends Error {
  /** The ports the daemon's log names as in use. */
  readonly ports: number[];
  constructor(log: string) {
    super(log);
    this.ports = [...log.matchAll(/EADDRINUSE[^\n]*?:(\d+)/g)].map((m) => Number(m[1]));
  }
}

export interface DaemonOptions {
  services?: string;
  /** false: write the config but leave start() to the test. */
  start?: boolean;
  /** Add a metrics listener (`metricsPort`). */
  metrics?: boolean;
  /**
   * A proxy port the daemon binds itself instead of one the harness holds (for
   * the harness's own test of its retry when that port was taken).
   */
  port?: number;
  /** The proxy's listen address (default 127.0.0.1): another loopback address stands for another host. */
  listenHost?: string;
  /** Another checkout's bin/baton.js, for the daemon and the CLI (a bench's "before" column). */
  bin?: string;
}

export async function createDaemon(opts: DaemonOptions = {}): Promise<TestDaemon> {
  const BATON = opts.bin ?? BATON_JS;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'baton-e2e-'));
  const listenHost = opts.listenHost ?? '127.0.0.1';
  // The harness's own ports (the proxy's, the metrics listener's): sockets bound
  // here and handed to the daemon at its first start.
  const held = new HeldListeners();
  let port = opts.port ?? (await held.add('public', listenHost));
  let metricsPort = opts.metrics ? await held.add('metrics') : null;
  let everStarted = false;
  let services = opts.services ?? serviceYaml();
  const configFile = path.join(dir, 'baton.yaml');
  const state = path.join(dir, 'state');
  const seenPids = new Set<number>();
  let proc: ChildProcess | null = null;
  let releaseN = 0;

  const writeConfig = async (text: string): Promise<void> => {
    services = text;
    const metrics = metricsPort === null ? [] : [`metrics_listen: "127.0.0.1:${metricsPort}"`];
    await writeFile(configFile, [`listen: ["${listenHost}:${port}"]`, ...metrics, 'state_dir: ./state', 'log_level: debug', 'services:', text, ''].join('\n'));
  };
  await writeConfig(services);

  const cli = (args: string[], timeoutMs = 60_000): Promise<CliResult> =>
    new Promise((resolve, reject) => {
      const c = spawn(process.execPath, [BATON, ...args, '--config', configFile], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      c.stdout!.on('data', (d) => (stdout += d));
      c.stderr!.on('data', (d) => (stderr += d));
      const t = setTimeout(() => {
        c.kill('SIGKILL');
        reject(new Error(`baton ${args.join(' ')} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
      }, timeoutMs);
      // 'close', not 'exit': the exit can be seen before the last of stdout is read.
      c.on('close', (code) => {
        clearTimeout(t);
        resolve({ code, stdout, stderr });
      });
    });

  const status = async (service?: string): Promise<any> => {
    const r = await cli(['status', ...(service ? [service] : []), '--json'], 10_000);
    if (r.code !== 0) throw new Error(`baton status failed: ${r.stderr}`);
    const s = JSON.parse(r.stdout);
    for (const svc of s.services) for (const i of svc.instances) seenPids.add(i.pid);
    return s;
  };

  const startOnce = async (): Promise<void> => {
    const logFile = path.join(dir, 'daemon.log');
    const logStart = existsSync(logFile) ? statSync(logFile).size : 0;
    const logFd = openSync(logFile, 'a');
    const sockets = held.forSpawn();
    try {
      proc = spawn(process.execPath, [...sockets.node, BATON, 'daemon', '--config', configFile], { cwd: dir, stdio: ['ignore', logFd, logFd, ...sockets.stdio], env: { ...process.env, ...sockets.env } });
    } finally {
      closeSync(logFd);
      held.closeHere();
    }
    const p = proc;
    let exited = false;
    p.once('exit', () => (exited = true));
    // A start takes a second or two; on a machine several times oversubscribed (a full
    // suite beside benchmarks) a proxy-workers daemon was seen to need more than 20 s.
    await waitUntil('the daemon to answer on its control socket', async () => {
      if (exited) {
        const log = (await readFile(logFile, 'utf8')).slice(logStart);
        if (log.includes('EADDRINUSE')) throw new PortTaken(log);
        throw new Error(`the daemon exited during start-up:\n${log}`);
      }
      if (!existsSync(path.join(state, 'baton.sock'))) return false;
      return (await cli(['status', '--json'], 10_000)).code === 0;
    }, 60_000, 100);
    everStarted = true;
  };

  // The harness's ports are held until the daemon has them; one can still be
  // taken before a start when the test gave it (opts.port), or when the first
  // start failed for another reason and the daemon binds it itself next time:
  // then take others (only before the first start: a restarted daemon must come
  // back on the port its clients know).
  const start = async (): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await startOnce();
      } catch (err) {
        if (!(err instanceof PortTaken) || everStarted || attempt === 5) throw err;
        // A port the test chose itself (written into the config by the test): the
        // test picks again (withFreePort); only the harness's own ports are re-picked here.
        if (err.ports.length > 0 && !err.ports.some((p) => p === port || p === metricsPort)) throw err;
        // Rewrite the harness's ports in place: a test may have written the file itself.
        let text = await readFile(configFile, 'utf8');
        const swap = (old: number, now: number): void => {
          text = text.replaceAll(`127.0.0.1:${old}"`, `127.0.0.1:${now}"`).replaceAll(`${listenHost}:${old}"`, `${listenHost}:${now}"`);
        };
        const oldPort = port;
        held.drop(oldPort);
        port = await held.add('public', listenHost);
        swap(oldPort, port);
        if (metricsPort !== null) {
          const oldMetrics = metricsPort;
          held.drop(oldMetrics);
          metricsPort = await held.add('metrics');
          swap(oldMetrics, metricsPort);
        }
        await writeFile(configFile, text);
      }
    }
  };

  const td: TestDaemon = {
    dir,
    get port() {
      return port;
    },
    get url() {
      return `http://${listenHost}:${port}`;
    },
    get metricsPort() {
      return metricsPort;
    },
    configFile,
    get proc() {
      return proc!;
    },
    cli,
    status,
    writeConfig,
    start,
    holdPort: (role, host) => held.add(role, host),
    async release(version, env = {}) {
      const rdir = path.join(dir, 'src', `${version}-${++releaseN}`);
      await mkdir(rdir, { recursive: true });
      const lines = [`process.env.APP_VERSION ??= ${JSON.stringify(version)};`];
      for (const [k, v] of Object.entries(env)) lines.push(`process.env[${JSON.stringify(k)}] = ${JSON.stringify(v)};`);
      lines.push(`await import(${JSON.stringify(FIXTURE_APP)});`);
      await writeFile(path.join(rdir, 'server.mjs'), lines.join('\n') + '\n');
      return rdir;
    },
    async kill9() {
      const p = proc!;
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await gone;
    },
    daemonLog: () => readFile(path.join(dir, 'daemon.log'), 'utf8').catch(() => ''),
    async cleanup() {
      // Sockets held for a start that never came.
      held.closeHere();
      // The daemon answering may not be `proc`: `baton upgrade` replaces it with a process of its own.
      const other = proc && (proc.exitCode !== null || proc.signalCode !== null) ? ((await status().catch(() => null))?.daemon?.pid as number | undefined) : undefined;
      if (other !== undefined) {
        await cli(['shutdown', '--stop-instances'], 10_000).catch(() => {});
        for (let i = 0; i < 150 && !isGone(other); i++) await new Promise((r) => setTimeout(r, 100));
        if (!isGone(other)) process.kill(other, 'SIGKILL');
      }
      if (proc && proc.exitCode === null && proc.signalCode === null) {
        await status().catch(() => {});
        await cli(['shutdown', '--stop-instances'], 10_000).catch(() => {});
        const p = proc;
        await settlesWithin(new Promise((r) => p.once('exit', r)), 15_000);
        if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      }
      killInstanceGroups(state, seenPids);
      if (!process.env['BATON_KEEP_TEST_DIRS']) await rm(dir, { recursive: true, force: true });
    },
  };
  if (opts.start !== false) await start();
  return td;
}

/**
 * SIGKILL the process group of every instance a daemon's store (in `stateDir`)
 * or its status (`seenPids`) named: instances live in their own groups, so
 * stopping the daemon does not reach them.
 */
export function killInstanceGroups(stateDir: string, seenPids: Iterable<number>): void {
  const pids = new Set(seenPids);
  const db = path.join(stateDir, 'baton.db');
  if (existsSync(db)) {
    try {
      const d = new DatabaseSync(db);
      for (const r of d.prepare('SELECT pid FROM instances').all() as { pid: number }[]) pids.add(Number(r.pid));
      d.close();
    } catch {
      // the store may be mid-write; the pids seen by status() still get killed
    }
  }
  for (const pid of pids) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** True once the process is gone or only a zombie waiting for its parent to reap it. */
export function isGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}
