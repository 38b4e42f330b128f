// Running the `git` binary (and `tar`): argument arrays only, never a shell;
// each process in its own process group (setsid, so no controlling terminal
// either: ssh cannot prompt), a timeout that stops the whole group (SIGTERM so
// git removes its lock files, then SIGKILL), stderr kept as a tail for messages.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';

export const DEFAULT_GIT_TIMEOUT_MS = 120_000;
/** Time between SIGTERM and SIGKILL to a timed-out process group. */
const KILL_GRACE_MS = 1_500;
/** Once the process has exited, how long to wait for its pipes to close (a daemonised grandchild may hold them). */
const CLOSE_GRACE_MS = 1_000;
const STDERR_TAIL_BYTES = 4096;
const STDOUT_MAX_BYTES = 8 * 1024 * 1024;

/**
 * Variables that point git at a particular repository or object store. The
 * daemon's own environment must not redirect our commands (e.g. when started
 * from a hook), so they are removed; exportFromGitDir passes its own explicitly.
 */
const REPO_LOCATING_VARS = [
  'GIT_DIR',
  'GIT_WORK_TREE',
  'GIT_IMPLICIT_WORK_TREE',
  'GIT_INDEX_FILE',
  'GIT_OBJECT_DIRECTORY',
  'GIT_ALTERNATE_OBJECT_DIRECTORIES',
  'GIT_QUARANTINE_PATH',
  'GIT_COMMON_DIR',
  'GIT_NAMESPACE',
  'GIT_GRAFT_FILE',
  'GIT_SHALLOW_FILE',
  'GIT_REPLACE_REF_BASE',
  'GIT_NO_REPLACE_OBJECTS',
  'GIT_PREFIX',
  'GIT_CONFIG', // a whole replacement config file
];

/**
 * The environment for git: the user's own (HOME, SSH_AUTH_SOCK, GIT_SSH_COMMAND,
 * proxies… so their git and ssh configuration apply), minus repository-locating
 * variables, plus: never prompt for anything, English messages.
 */
export function gitEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of REPO_LOCATING_VARS) delete env[k];
  env.GIT_TERMINAL_PROMPT = '0';
  env.GCM_INTERACTIVE = 'never';
  if (env.SSH_ASKPASS_REQUIRE === undefined) env.SSH_ASKPASS_REQUIRE = 'never';
  env.LC_ALL = 'C';
  env.LANGUAGE = 'C';
  return { ...env, ...extra };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  /** The last few KB of stderr, trimmed. */
  stderr: string;
  timedOut: boolean;
  /** The process could not be started at all (e.g. ENOENT). */
  spawnError: Error | null;
  durationMs: number;
}

export interface SpawnOpts {
  env: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs: number;
  /** 'pipe' to read it (collected by run()), or 'ignore'. */
  stdin?: 'ignore' | 'pipe';
  stdout?: 'pipe' | 'ignore';
}

/** A started process in its own group, with its timeout and an awaitable end. */
export interface Supervised {
  child: ChildProcess;
  /** Resolves when the process has exited and its pipes are closed (or given up on). Never rejects. */
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; timedOut: boolean; spawnError: Error | null }>;
  stderrTail(): string;
  /** Stop the whole group now (SIGTERM, then SIGKILL). */
  kill(): void;
}

export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

export function supervise(cmd: string, args: string[], opts: SpawnOpts): Supervised {
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env: opts.env,
    detached: true, // setsid: own process group, no controlling terminal
    stdio: [opts.stdin ?? 'ignore', opts.stdout ?? 'pipe', 'pipe'],
    windowsHide: true,
  });
  let tail = Buffer.alloc(0);
  child.stderr?.on('data', (b: Buffer) => {
    tail = Buffer.concat([tail, b]);
    if (tail.length > STDERR_TAIL_BYTES * 2) tail = tail.subarray(tail.length - STDERR_TAIL_BYTES);
  });
  let timedOut = false;
  let exited = false;
  let killTimer: NodeJS.Timeout | undefined;
  const kill = (): void => {
    if (exited || killTimer) return;
    killGroup(child, 'SIGTERM');
    killTimer = setTimeout(() => killGroup(child, 'SIGKILL'), KILL_GRACE_MS);
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, opts.timeoutMs);

  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; timedOut: boolean; spawnError: Error | null }>(
    (resolve) => {
      let settled = false;
      let closeTimer: NodeJS.Timeout | undefined;
      const finish = (code: number | null, signal: NodeJS.Signals | null, spawnError: Error | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(closeTimer);
        // After a group kill, also SIGKILL any survivor still in the group.
        if (killTimer) {
          clearTimeout(killTimer);
          killGroup(child, 'SIGKILL');
        }
        resolve({ code, signal, timedOut, spawnError });
      };
      let spawnError: Error | null = null;
      child.on('error', (err) => {
        // spawn failure (ENOENT, EACCES): no exit event follows
        if (child.pid === undefined) {
          spawnError = err;
          finish(null, null, err);
        }
      });
      child.once('exit', (code, signal) => {
        exited = true;
        closeTimer = setTimeout(() => {
          child.stdout?.destroy();
          child.stderr?.destroy();
          finish(code, signal, null);
        }, CLOSE_GRACE_MS);
      });
      child.once('close', (code: number | null, signal: NodeJS.Signals | null) => finish(code, signal, spawnError));
    },
  );
  return {
    child,
    done,
    stderrTail: () => tailText(tail),
    kill,
  };
}

function tailText(buf: Buffer): string {
  const s = buf.subarray(Math.max(0, buf.length - STDERR_TAIL_BYTES)).toString('utf8');
  return s.replace(/\r/g, '\n').replace(/\n{2,}/g, '\n').trim();
}

/** Run a command to completion, collecting stdout (small outputs only: refs, commit info). */
export async function run(cmd: string, args: string[], opts: SpawnOpts): Promise<RunResult> {
  const started = Date.now();
  const p = supervise(cmd, args, { ...opts, stdout: 'pipe' });
  const chunks: Buffer[] = [];
  let size = 0;
  p.child.stdout?.on('data', (b: Buffer) => {
    size += b.length;
    if (size <= STDOUT_MAX_BYTES) chunks.push(b);
    else p.kill();
  });
  const r = await p.done;
  return {
    code: r.code,
    signal: r.signal,
    stdout: Buffer.concat(chunks).toString('utf8'),
    stderr: p.stderrTail(),
    timedOut: r.timedOut,
    spawnError: r.spawnError,
    durationMs: Date.now() - started,
  };
}

/** The last `n` non-empty lines of a stderr tail, for an error message. */
export function lastLines(text: string, n = 6): string {
  return text
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l.length > 0)
    .slice(-n)
    .join('\n');
}

/** One-line description of how a command failed. */
export function describeFailure(r: RunResult, timeoutMs: number): string {
  if (r.spawnError) return `could not be started: ${r.spawnError.message}`;
  if (r.timedOut) return `timed out after ${Math.round(timeoutMs / 100) / 10} s${r.stderr ? `: ${lastLines(r.stderr, 3)}` : ''}`;
  const how = r.signal ? `killed by ${r.signal}` : `exit code ${r.code}`;
  return r.stderr ? `${lastLines(r.stderr)} (${how})` : how;
}
