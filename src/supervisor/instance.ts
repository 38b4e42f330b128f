// One app instance: a process group started (or re-adopted) by baton, its
// liveness, its health, and stopping it.

import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { ServiceConfig } from '../config/types.ts';
import { BatonError, errorMessage } from '../core/errors.ts';
import { HealthMonitor } from './health-monitor.ts';
import { instanceLaunch, tailLog } from './logs.ts';
import { isDeadState, isGroupAlive, isSameProcessAlive, readProcStat, startTimeToEpochMs } from '../core/proc.ts';
import { KILL_WAIT_MS, signalGroup, toSignal, waitUntil } from '../core/signals.ts';
import type { ExitInfo, InstanceListener, InstanceRecord, InstanceState } from './types.ts';

/** How long a crash report waits for the log writer to write the app's last lines. */
const LOG_WRITER_FLUSH_MS = 1000;

/** How often an adopted instance (not our child: no exit event) is checked in /proc. */
const ADOPTED_POLL_MS = 250;
/** Log lines attached to start failures. */
const LOG_TAIL_LINES = 20;

export interface SpawnOptions {
  id: string;
  service: ServiceConfig;
  release: string;
  releaseDir: string;
  port: number;
  logFile: string;
  extraEnv?: Record<string, string>;
}

interface InstanceInit extends InstanceRecord {
  service: string;
  config: ServiceConfig;
  listener: InstanceListener;
  child: ChildProcess | null;
  /** The process group to signal; null when pid does not lead its own group (then only pid is signalled). */
  pgid: number | null;
  startedAt: number;
}

export class Instance {
  readonly id: string;
  readonly service: string;
  readonly release: string;
  readonly releaseDir: string;
  readonly port: number;
  readonly pid: number;
  readonly startTime: string;
  readonly logFile: string;
  readonly startedAt: number;

  #config: ServiceConfig;
  #listener: InstanceListener;
  #child: ChildProcess | null;
  #pgid: number | null;
  #health: HealthMonitor;
  #state: InstanceState = 'starting';
  #exit: ExitInfo | null = null;
  #poller: NodeJS.Timeout | null = null;
  #stopping: Promise<{ forced: boolean; durationMs: number }> | null = null;
  #detached = false;
  /** Woken on every state change (waitHealthy, stop). */
  #waiters = new Set<() => void>();
  #remainsGone: Promise<boolean> = Promise.resolve(false);
  /** Every reap in progress → how to hurry it (their owner has forgotten these instances). */
  static readonly #reaping = new Map<Promise<boolean>, () => void>();
  #hurryRemains: (() => void) | null = null;
  /** Resolves when the leader process is seen gone. */
  #leaderGone: Promise<void>;
  #resolveLeaderGone!: () => void;

  private constructor(init: InstanceInit) {
    this.id = init.id;
    this.service = init.service;
    this.release = init.release;
    this.releaseDir = init.releaseDir;
    this.port = init.port;
    this.pid = init.pid;
    this.startTime = init.startTime;
    this.logFile = init.logFile;
    this.startedAt = init.startedAt;
    this.#config = init.config;
    this.#listener = init.listener;
    this.#child = init.child;
    this.#pgid = init.pgid;
    this.#leaderGone = new Promise((resolve) => (this.#resolveLeaderGone = resolve));
    this.#health = new HealthMonitor(init.port, init.config.health, { changed: (healthy) => this.#healthChanged(healthy) });
  }

  get state(): InstanceState {
    return this.#state;
  }

  get healthy(): boolean {
    return this.#state === 'healthy';
  }

  get lastHealthError(): string | null {
    return this.#health.lastError;
  }

  get exit(): ExitInfo | null {
    return this.#state === 'exited' ? this.#exit : null;
  }

  /**
   * Start `/bin/sh -c command` (through the log writer's launcher, logs.ts) in releaseDir as the leader of a new session
   * and process group, output appended to logFile through an inherited fd (no
   * pipe to the daemon, so the instance outlives it). Health checks start at once.
   */
  static async spawn(opts: SpawnOptions, listener: InstanceListener): Promise<Instance> {
    const { service } = opts;
    const env: Record<string, string | undefined> = {
      ...process.env,
      ...service.env,
      ...opts.extraEnv,
      PORT: String(opts.port),
      BATON_SERVICE: service.name,
      BATON_RELEASE: opts.release,
      BATON_INSTANCE: opts.id,
    };
    const runAs = service.runAs;
    if (runAs) {
      // The app's own user: its home and name, not the daemon's.
      Object.assign(env, { HOME: runAs.home, USER: runAs.user, LOGNAME: runAs.user });
      const self = process.getuid?.() ?? 0;
      if (self !== 0 && self !== runAs.uid) {
        throw new BatonError('INSTANCE_CRASHED', `instance ${opts.id} could not be started: service ${service.name} runs as user ${runAs.user}, which needs a daemon running as root (this one runs as uid ${self})`);
      }
    }
    // Checked first: spawn reports a missing cwd as "spawn /bin/sh ENOENT".
    const dir = await stat(opts.releaseDir).catch(() => null);
    if (dir === null || !dir.isDirectory()) {
      throw new BatonError('INSTANCE_CRASHED', `instance ${opts.id} could not be started: ${opts.releaseDir} is not a directory`);
    }
    // From here to attaching the exit listener everything is synchronous: an
    // await would let the event loop reap a fast-failing child and drop its exit.
    const log = openSync(opts.logFile, 'a');
    let child: ChildProcess;
    try {
      const launch = instanceLaunch({ command: service.command, logFile: opts.logFile, maxBytes: service.logs.maxBytes, keep: service.logs.keep, runAs });
      child = spawnChild('/bin/sh', launch.args, {
        cwd: opts.releaseDir,
        env,
        detached: true, // setsid(): own session and process group, pgid = pid
        stdio: ['ignore', log, log],
        // As the app's user: setpriv in the launcher after the log writer
        // started (logs.ts), or setgid/setuid at spawn without a writer
        // (libuv drops the daemon's supplementary groups too). Either way the
        // log file is opened by the daemon's user, not by the app.
        ...launch.spawnAs,
      });
    } finally {
      // The child has its own copy of the fd now (spawn returns after exec).
      closeSync(log);
    }
    const pid = child.pid;
    if (pid === undefined) {
      const err = await new Promise<Error>((resolve) => child.once('error', resolve));
      throw new BatonError('INSTANCE_CRASHED', `instance ${opts.id} could not be started: ${errorMessage(err)}`);
    }
    // The pid is still ours (at worst a zombie) until the event loop reaps it.
    const startTime = readProcStat(pid)?.startTime ?? '';
    child.unref(); // the daemon may exit and leave it running
    const inst = new Instance({
      id: opts.id,
      service: service.name,
      release: opts.release,
      releaseDir: opts.releaseDir,
      port: opts.port,
      pid,
      startTime,
      logFile: opts.logFile,
      config: service,
      listener,
      child,
      pgid: pid,
      startedAt: Date.now(),
    });
    child.on('error', () => {}); // e.g. a kill() on an already reaped child; exits come from 'exit'
    child.once('exit', (code, signal) => inst.#leaderExited({ code, signal, at: Date.now() }));
    inst.#health.start();
    return inst;
  }

  /**
   * Re-adopt an instance recorded by a previous daemon. Null unless pid is
   * still the same live process (same start time, not a zombie). Liveness is
   * then polled from /proc; state is 'starting' until the health threshold is
   * passed again.
   */
  static adopt(record: InstanceRecord, service: ServiceConfig, listener: InstanceListener): Instance | null {
    const stat = readProcStat(record.pid);
    if (stat === null || stat.startTime !== record.startTime || isDeadState(stat.state)) return null;
    const inst = new Instance({
      ...record,
      config: service,
      listener,
      child: null,
      pgid: stat.pgrp === record.pid ? record.pid : null,
      startedAt: startTimeToEpochMs(record.startTime) ?? Date.now(),
    });
    inst.#poller = setInterval(() => {
      if (!isSameProcessAlive(inst.pid, inst.startTime)) inst.#leaderExited({ code: null, signal: null, at: Date.now() });
    }, ADOPTED_POLL_MS);
    inst.#poller.unref();
    inst.#health.start();
    return inst;
  }

  toRecord(): InstanceRecord {
    return {
      id: this.id,
      service: this.service,
      release: this.release,
      releaseDir: this.releaseDir,
      pid: this.pid,
      startTime: this.startTime,
      port: this.port,
      logFile: this.logFile,
    };
  }

  /**
   * Resolve once healthy. Reject with INSTANCE_CRASHED if it exits first, or
   * INSTANCE_UNHEALTHY after timeoutMs; details carry the last health error
   * and the tail of the log.
   */
  waitHealthy(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const settle = (): boolean => {
        if (this.#state === 'healthy') {
          resolve();
        } else if (this.#state === 'exited') {
          const exit = this.#exit;
          const how = exit === null ? 'exited' : exit.signal !== null ? `was killed by ${exit.signal}` : exit.code !== null ? `exited with code ${exit.code}` : 'exited';
          void this.#failure('INSTANCE_CRASHED', `instance ${this.id} ${how} before it became healthy`).then(reject);
        } else {
          return false;
        }
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        return true;
      };
      const waiter = (): void => void settle();
      if (settle()) return;
      this.#waiters.add(waiter);
      timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        void this.#failure('INSTANCE_UNHEALTHY', `instance ${this.id} not healthy after ${timeoutMs} ms`).then(reject);
      }, timeoutMs);
    });
  }

  /**
   * The service's settings changed (a config reload). Health checks and the
   * stop signal and timeout follow them from now on; the command and env only
   * matter at spawn, so a running process keeps the ones it was started with.
   */
  applySettings(service: ServiceConfig): void {
    this.#config = service;
    this.#health.reconfigure(service.health);
  }

  /**
   * Stop: no more health checks, stopSignal to the process group, SIGKILL to
   * the group after stopTimeoutMs; resolves when the leader and every other
   * member of the group are gone (zombies count as gone). Idempotent.
   */
  stop(): Promise<{ forced: boolean; durationMs: number }> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  /**
   * Stop watching (health checks, liveness) and reporting, without stopping the
   * process: the daemon is exiting and leaves it to its successor.
   */
  detach(): void {
    this.#detached = true;
    this.#health.stop();
    this.#stopPolling();
    this.#child?.removeAllListeners('exit');
  }

  async #stop(): Promise<{ forced: boolean; durationMs: number }> {
    const started = Date.now();
    this.#health.stop();
    if (this.#state === 'exited') return { forced: false, durationMs: 0 };
    this.#setState('stopping');
    const gone = (): boolean => this.#isLeaderGone() && (this.#pgid === null || !isGroupAlive(this.#pgid));
    let forced = false;
    this.#signal(toSignal(this.#config.stopSignal));
    if (!(await waitUntil(gone, this.#config.stopTimeoutMs, this.#leaderGone))) {
      forced = true;
      this.#signal('SIGKILL');
      if (!(await waitUntil(gone, KILL_WAIT_MS, this.#leaderGone))) {
        throw new BatonError('INTERNAL', `instance ${this.id} (pid ${this.pid}) still running ${KILL_WAIT_MS} ms after SIGKILL`);
      }
    }
    // Our child may be a zombie a moment before its exit event brings the exit code.
    if (this.#exit === null && this.#child !== null && !this.#detached) {
      await waitUntil(() => this.#exit !== null, 1000);
    }
    this.#finish(this.#exit ?? { code: null, signal: null, at: Date.now() });
    return { forced, durationMs: Date.now() - started };
  }

  #isLeaderGone(): boolean {
    return this.#exit !== null || !isSameProcessAlive(this.pid, this.startTime);
  }

  /** Signal the group (or the lone process); a no-op once everything is gone, so a reused pid is never hit. */
  #signal(sig: NodeJS.Signals): void {
    if (this.#pgid !== null) {
      if (this.#isLeaderGone() && !isGroupAlive(this.#pgid)) return;
      signalGroup(this.#pgid, sig);
      return;
    }
    if (this.#isLeaderGone()) return;
    try {
      process.kill(this.pid, sig);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }

  #leaderExited(exit: ExitInfo): void {
    if (this.#exit !== null || this.#detached) return;
    this.#exit = exit;
    this.#health.stop();
    this.#stopPolling();
    this.#resolveLeaderGone();
    if (this.#state === 'stopping') return; // stop() finishes once the whole group is gone
    // An unexpected exit: the instance is over, and its owner takes it out of
    // rotation now. What is left of its group may be a master's workers in the
    // middle of responses (gunicorn's finish them and exit when the master is
    // gone): they get until the drain timeout, then the group is killed.
    this.#finish(exit);
    if (this.#pgid !== null) {
      const reap = this.#reapRemains(this.#pgid);
      this.#remainsGone = reap;
      Instance.#reaping.set(reap, () => this.#hurryRemains?.());
      void reap.finally(() => Instance.#reaping.delete(reap));
    }
  }

  /**
   * Stop the remains of every instance whose leader died (see remainsGone) now,
   * as stop() would (stop signal, SIGKILL after the stop timeout), and resolve
   * once they are gone: a daemon that stops its instances leaves none behind.
   */
  static async stopRemainsOfDeadLeaders(): Promise<void> {
    for (const hurry of Instance.#reaping.values()) hurry();
    await Promise.all([...Instance.#reaping.keys()]);
  }

  /**
   * After an unexpected leader exit: resolves once the rest of the process group
   * is gone, true if it had to be killed (it outlived the drain timeout, or was
   * stopped by stopRemainsOfDeadLeaders() and outlived the stop timeout).
   */
  get remainsGone(): Promise<boolean> {
    return this.#remainsGone;
  }

  async #reapRemains(pgid: number): Promise<boolean> {
    const gone = (): boolean => !isGroupAlive(pgid);
    let hurried = false;
    const hurry = new Promise<void>((resolve) => {
      this.#hurryRemains = () => {
        hurried = true;
        resolve();
      };
    });
    const send = (sig: NodeJS.Signals): void => {
      try {
        signalGroup(pgid, sig);
      } catch {
        // nothing left to signal
      }
    };
    try {
      if (gone()) return false;
      await waitUntil(() => gone() || hurried, this.#config.drainTimeoutMs, hurry);
      if (gone()) return false;
      if (hurried) {
        send(toSignal(this.#config.stopSignal));
        if (await waitUntil(gone, this.#config.stopTimeoutMs)) return false;
      }
      send('SIGKILL');
      await waitUntil(gone, KILL_WAIT_MS);
      return true;
    } finally {
      this.#hurryRemains = null;
    }
  }

  #finish(exit: ExitInfo): void {
    if (this.#state === 'exited') return;
    this.#exit = exit;
    this.#stopPolling();
    this.#setState('exited');
    if (!this.#detached) this.#listener.instanceExited(this, exit);
  }

  #healthChanged(healthy: boolean): void {
    if (this.#state === 'stopping' || this.#state === 'exited' || this.#detached) return;
    this.#setState(healthy ? 'healthy' : 'unhealthy');
    this.#listener.instanceHealthChanged(this, healthy);
  }

  #setState(state: InstanceState): void {
    this.#state = state;
    for (const wake of [...this.#waiters]) wake();
  }

  #stopPolling(): void {
    if (this.#poller !== null) clearInterval(this.#poller);
    this.#poller = null;
  }

  async #failure(code: 'INSTANCE_CRASHED' | 'INSTANCE_UNHEALTHY', message: string): Promise<BatonError> {
    // A crashed app's last lines may still be in its log writer (logs.ts),
    // which exits once it has written them: wait briefly for the group to end.
    if (code === 'INSTANCE_CRASHED' && this.#pgid !== null) {
      const end = Date.now() + LOG_WRITER_FLUSH_MS;
      while (isGroupAlive(this.#pgid) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    }
    let lines: string[];
    try {
      lines = await tailLog(this.logFile, LOG_TAIL_LINES);
    } catch (err) {
      lines = [`(log ${this.logFile} unreadable: ${errorMessage(err)})`];
    }
    const health = this.#health.lastError;
    const details = [`last health check: ${health ?? 'no failure'}`, `last ${lines.length} lines of ${this.logFile}:`, ...lines];
    return new BatonError(code, message, details);
  }
}
