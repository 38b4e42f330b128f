// Running a deployment hook (build, migrate, smoke, after_switch): an operator's
// shell command in its own process group, its output streamed line by line and
// kept on disk, bounded by a timeout that kills the whole tree.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, createWriteStream, openSync, type WriteStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { finished } from 'node:stream/promises';
import { BatonError, errorMessage } from '../core/errors.ts';
import { formatDuration } from '../core/time.ts';
import { isGroupAlive } from '../core/proc.ts';
import { KILL_WAIT_MS, signalGroup, waitUntil } from '../core/signals.ts';
import { LineSplitter, Tail } from './lines.ts';

export type HookName = 'build' | 'migrate' | 'smoke' | 'after_switch' | 'check';

export interface HookSpec {
  name: HookName;
  command: string;
  timeoutMs: number;
}

export interface HookRun {
  name: HookName;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** From start until the shell exited (a killed run: until it was gone). */
  durationMs: number;
  /** last 40 lines of combined output (and baton's own notes, prefixed "[baton] ") */
  tail: string[];
  /** path of the full output log */
  logFile: string;
  /** Stopped through the AbortSignal. */
  aborted?: boolean;
  /** The limit the run had, for the message of a timed-out run. */
  timeoutMs?: number;
}

export interface RunHookOptions {
  cwd: string;
  env: Record<string, string>;
  logFile: string;
  onLine: (line: string, stream: 'stdout' | 'stderr') => void;
  signal?: AbortSignal;
  /** Run as this user and group (setuid/setgid at spawn; the daemon must be root). */
  runAs?: { uid: number; gid: number };
}

/** Lines kept in HookRun.tail. */
export const TAIL_LINES = 40;
/** After SIGTERM to the group, how long before SIGKILL. */
export const HOOK_KILL_GRACE_MS = 5_000;
/** After the shell exits, how long its background children may take to finish before they are stopped. */
export const LEFTOVER_GRACE_MS = 1_000;
/** After the group is gone, how long to wait for the pipes to close (a process that left the group may hold them). */
const PIPE_CLOSE_WAIT_MS = 500;
/** setTimeout's limit (a longer delay would fire at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Run `/bin/sh -c command` in `cwd`, in its own process group (detached, so a
 * timeout kills the whole tree: SIGTERM to the group, then SIGKILL after 5 s),
 * env = process.env + env, stdin closed. stdout and stderr are merged line by
 * line in arrival order, each line handed to onLine and appended to logFile.
 * Resolves with the HookRun whatever the exit status; rejects only if the
 * command could not be started at all (BatonError 'HOOK_FAILED'). Abortable
 * through signal (kills the group). Very long lines are split at 8 KiB; binary
 * output does not break it. Processes the shell leaves running in its group
 * once it has exited are given LEFTOVER_GRACE_MS, then stopped the same way.
 */
export async function runHook(spec: HookSpec, opts: RunHookOptions): Promise<HookRun> {
  const label = `${spec.name} hook`;
  const cannotStart = (why: string): BatonError => new BatonError('HOOK_FAILED', `${label} could not be started: ${why}`);
  if (opts.signal?.aborted) throw cannotStart('aborted before it started');
  if (!(spec.timeoutMs > 0)) throw cannotStart(`invalid timeout ${spec.timeoutMs}`);
  // Checked first: spawn reports a missing cwd as "spawn /bin/sh ENOENT".
  const dir = await stat(opts.cwd).catch(() => null);
  if (dir === null) throw cannotStart(`working directory ${opts.cwd} does not exist`);
  if (!dir.isDirectory()) throw cannotStart(`working directory ${opts.cwd} is not a directory`);
  let logFd: number;
  try {
    await mkdir(dirname(opts.logFile), { recursive: true });
    logFd = openSync(opts.logFile, 'a');
  } catch (err) {
    throw cannotStart(`cannot open log file ${opts.logFile}: ${errorMessage(err)}`);
  }

  const startedAt = performance.now();
  // From spawn to attaching the exit listener everything is synchronous, so a
  // fast-failing child's exit cannot be lost.
  let child: ChildProcess;
  try {
    child = spawn('/bin/sh', ['-c', spec.command], {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      detached: true, // setsid(): own session and process group, pgid = pid
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.runAs ? { uid: opts.runAs.uid, gid: opts.runAs.gid } : {}),
    });
  } catch (err) {
    closeSync(logFd);
    throw cannotStart(errorMessage(err));
  }
  const pgid = child.pid;
  if (pgid === undefined) {
    const err = await new Promise<Error>((resolve) => child.once('error', resolve));
    closeSync(logFd);
    throw cannotStart(errorMessage(err));
  }
  child.on('error', () => {}); // e.g. kill() of a reaped child; the exit comes from 'exit'
  const exited = new Promise<{ code: number | null; signal: string | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: performance.now() })),
  );

  const log: WriteStream = createWriteStream('', { fd: logFd, autoClose: true });
  log.on('error', () => {}); // a full disk must not fail the hook; the lines still go to onLine
  const tail = new Tail(TAIL_LINES);
  const stdout = child.stdout!;
  const stderr = child.stderr!;
  let paused = false;
  const write = (text: string): void => {
    if (!log.write(text + '\n') && !paused) {
      // The disk is slower than the hook: stop reading until the log catches up.
      paused = true;
      stdout.pause();
      stderr.pause();
      log.once('drain', () => {
        paused = false;
        stdout.resume();
        stderr.resume();
      });
    }
  };
  const note = (text: string): void => {
    const line = `[baton] ${text}`;
    tail.push(line);
    write(line);
  };
  const pipeClosed = (stream: NodeJS.ReadableStream, name: 'stdout' | 'stderr'): Promise<void> => {
    const lines = new LineSplitter((line) => {
      tail.push(line);
      write(line);
      try {
        opts.onLine(line, name);
      } catch {
        // a broken consumer must not break the run
      }
    });
    stream.on('data', (chunk: Buffer) => lines.push(chunk));
    return new Promise((resolve) => {
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        lines.end();
        resolve();
      };
      stream.once('end', finish);
      stream.once('close', finish);
      stream.once('error', finish);
    });
  };
  let outputClosed = false;
  const closed = Promise.all([pipeClosed(stdout, 'stdout'), pipeClosed(stderr, 'stderr')]).then(() => {
    outputClosed = true;
  });

  // Stopping the group: SIGTERM, SIGKILL after the grace, then wait until it is gone.
  const groupGone = (): boolean => !isGroupAlive(pgid);
  let stopping: Promise<void> | null = null;
  const stopGroup = (why: string): Promise<void> => {
    stopping ??= (async () => {
      note(`${why}: SIGTERM to the process group`);
      send(pgid, 'SIGTERM');
      if (await waitUntil(groupGone, HOOK_KILL_GRACE_MS)) return;
      note(`still running ${formatDuration(HOOK_KILL_GRACE_MS)} after SIGTERM: SIGKILL`);
      send(pgid, 'SIGKILL');
      if (!(await waitUntil(groupGone, KILL_WAIT_MS))) note(`process group ${pgid} still running after SIGKILL`);
    })();
    return stopping;
  };

  let timedOut = false;
  let aborted = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void stopGroup(`timed out after ${formatLimit(spec.timeoutMs)}`);
  }, Math.min(spec.timeoutMs, MAX_TIMER_MS));
  const onAbort = (): void => {
    aborted = true;
    void stopGroup('aborted');
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) onAbort(); // aborted while the log was being opened

  let exit: { code: number | null; signal: string | null; at: number };
  try {
    exit = await exited;
    // Background children of the shell: let them finish briefly, then stop them.
    if (!(await waitUntil(() => outputClosed && groupGone(), LEFTOVER_GRACE_MS, closed))) {
      if (groupGone()) {
        // Only a process that left the group holds the pipes: stop reading them.
      } else {
        await stopGroup(`the shell exited, processes it started are still running`);
      }
    }
    // Assigned inside stopGroup(), which the type checker does not follow.
    const stopped = stopping as Promise<void> | null;
    if (stopped) await stopped;
    await waitUntil(() => outputClosed, PIPE_CLOSE_WAIT_MS, closed);
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
  if (!outputClosed) {
    note('output still open after the process group exited (a process left the group?): no longer read');
    stdout.destroy();
    stderr.destroy();
    await closed;
  }
  const endedAt = stopping ? performance.now() : exit.at;
  log.end();
  await finished(log).catch(() => {});

  const run: HookRun = {
    name: spec.name,
    exitCode: exit.code,
    signal: exit.signal,
    timedOut,
    durationMs: Math.round(endedAt - startedAt),
    tail: tail.lines(),
    logFile: opts.logFile,
    timeoutMs: spec.timeoutMs,
  };
  if (aborted) run.aborted = true;
  return run;
}

function send(pgid: number, sig: NodeJS.Signals): void {
  try {
    signalGroup(pgid, sig);
  } catch {
    // EPERM or a refused group: nothing more we can do; the wait reports it
  }
}

/** A configured limit: 60000 → "60s", 600000 → "10m", 1500 → "1.5s", 90000 → "1m30s". */
function formatLimit(ms: number): string {
  if (ms >= 1000 && ms <= 60_000 && ms % 1000 === 0) return `${ms / 1000}s`;
  if (ms > 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  return formatDuration(ms);
}

/**
 * Turn a failed run into a BatonError('HOOK_FAILED', ...) with the tail of its
 * output as details: `build hook failed (exit 2) after 3.1s`, `build hook timed
 * out after 60s (killed)`, `smoke hook failed (killed by SIGKILL) after 1.2s`,
 * `migrate hook aborted after 0.4s`. Null for a success (exit 0).
 */
export function hookError(run: HookRun): BatonError | null {
  const label = `${run.name} hook`;
  const took = formatDuration(run.durationMs);
  let message: string;
  if (run.timedOut) message = `${label} timed out after ${formatLimit(run.timeoutMs ?? run.durationMs)} (killed)`;
  else if (run.aborted) message = `${label} aborted after ${took}`;
  else if (run.exitCode === 0) return null;
  else if (run.exitCode !== null) message = `${label} failed (exit ${run.exitCode}) after ${took}`;
  else if (run.signal !== null) message = `${label} failed (killed by ${run.signal}) after ${took}`;
  else message = `${label} failed after ${took}`;
  return new BatonError('HOOK_FAILED', message, [...run.tail]);
}
