// A lock held across processes (two daemons on the same state directory, or a
// CLI-driven and a push-driven deploy), e.g. around database migrations.
//
// The lock is a file created exclusively: its full contents are written to a
// private temporary file first, then hard-linked to `path` (link(2) fails with
// EEXIST if `path` exists, like O_EXCL, and nobody ever sees a half-written lock
// file). It names its holder: pid, the process start time from /proc (so a
// reused pid is not mistaken for the holder), purpose, time and a random token.
// A lock whose holder is gone is stale and is taken over; taking over is done
// under a short-lived guard file so that two waiters cannot both take it over.
// Within one process, acquirers of the same path queue in order first.

import { randomUUID } from 'node:crypto';
import { link, mkdir, open, unlink, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { BatonError, errorMessage } from '../core/errors.ts';
import { formatDuration, sleep } from '../core/time.ts';
import { isDeadState, isSameProcessAlive, readProcStat } from '../core/proc.ts';

export interface LockHolder {
  pid: number;
  /** /proc/PID/stat start time of the holder ('' if unknown). */
  startTime: string;
  purpose: string;
  /** ISO time the lock was taken. */
  acquiredAt: string;
  token: string;
}

export interface AcquireLockOptions {
  purpose: string;
  timeoutMs: number;
  /** How often to look again while the lock is held by another process (default 100 ms). */
  pollMs?: number;
  /** Called once, when the lock is found held by another live process and the wait begins (to say who is waited for). */
  onWait?: (holder: LockHolder | null) => void;
}

export interface Lock {
  /** Remove the lock file if it is still ours (idempotent), and let the next in-process acquirer in. */
  release(): Promise<void>;
  /** The pid of the gone holder whose stale lock was taken over (0 if the stale file was unreadable), or null. */
  tookOverStaleFrom: number | null;
  /** What the stale lock file said, when one was taken over and could be read. */
  staleHolder: LockHolder | null;
}

export const DEFAULT_LOCK_POLL_MS = 100;
/** A lock file that cannot be parsed is garbage (e.g. written by hand, or a crash in the fallback path) once this old. */
const UNREADABLE_STALE_MS = 5_000;
/** A takeover guard is held for a few milliseconds; one this old was left by a crash. */
const GUARD_STALE_MS = 10_000;

/**
 * Take the lock at `path`, waiting (polling every pollMs, at most timeoutMs in
 * all) while a live process holds it; a stale lock (holder pid dead, or its
 * start time differs) is taken over and reported in tookOverStaleFrom. On
 * timeout: BatonError('LOCK_TIMEOUT') naming the holder's pid and purpose.
 */
export async function acquireLock(path: string, opts: AcquireLockOptions): Promise<Lock> {
  const key = resolve(path);
  const started = Date.now();
  const deadline = started + Math.max(0, opts.timeoutMs);
  const pollMs = Math.max(1, opts.pollMs ?? DEFAULT_LOCK_POLL_MS);
  const turn = await waitForTurn(key, opts, deadline);
  let got: { token: string; stale: Held | null };
  try {
    got = await acquireFile(key, opts, deadline, pollMs);
  } catch (err) {
    turn.done();
    throw err;
  }
  let released = false;
  return {
    tookOverStaleFrom: got.stale === null ? null : (got.stale.holder?.pid ?? 0),
    staleHolder: got.stale?.holder ?? null,
    async release(): Promise<void> {
      if (released) return;
      released = true;
      try {
        const held = await readHeld(key);
        if (held?.holder?.token === got.token) await unlinkQuiet(key);
      } finally {
        turn.done();
      }
    },
  };
}

// ---- within the process: a FIFO per path ----------------------------------

interface Queue {
  tail: Promise<void>;
  holder: { purpose: string; since: string } | null;
  users: number;
}
const queues = new Map<string, Queue>();

async function waitForTurn(key: string, opts: AcquireLockOptions, deadline: number): Promise<{ done(): void }> {
  let q = queues.get(key);
  if (q === undefined) {
    q = { tail: Promise.resolve(), holder: null, users: 0 };
    queues.set(key, q);
  }
  const queue = q;
  queue.users++;
  const prev = queue.tail;
  let passOn!: () => void;
  const mine = new Promise<void>((r) => (passOn = r));
  // The next acquirer's turn comes once ours is over: released, or given up.
  queue.tail = prev.then(() => mine);
  let over = false;
  let holderIsMe = false;
  const done = (): void => {
    if (over) return;
    over = true;
    if (holderIsMe) queue.holder = null;
    passOn();
    if (--queue.users === 0 && queues.get(key) === queue) queues.delete(key);
  };
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), Math.min(2 ** 31 - 1, Math.max(0, deadline - Date.now())))));
  const outcome = await Promise.race([prev.then(() => 'turn' as const), timedOut]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    const h = queue.holder;
    done();
    throw new BatonError(
      'LOCK_TIMEOUT',
      `lock ${key} is held by pid ${process.pid} (${h?.purpose ?? 'unknown purpose'}, this process, since ${h?.since ?? '?'}); ` +
        `gave up waiting for ${opts.purpose} after ${formatDuration(opts.timeoutMs)}`,
    );
  }
  queue.holder = { purpose: opts.purpose, since: new Date().toISOString() };
  holderIsMe = true;
  return { done };
}

// ---- across processes: the lock file --------------------------------------

interface Held {
  raw: string;
  holder: LockHolder | null;
  mtimeMs: number;
}

async function acquireFile(path: string, opts: AcquireLockOptions, deadline: number, pollMs: number): Promise<{ token: string; stale: Held | null }> {
  const token = randomUUID();
  const pid = process.pid;
  const startTime = readProcStat(pid)?.startTime ?? '';
  const content = (): string =>
    JSON.stringify({ pid, startTime, purpose: opts.purpose, acquiredAt: new Date().toISOString(), token } satisfies LockHolder) + '\n';
  try {
    await mkdir(dirname(path), { recursive: true });
  } catch (err) {
    throw new BatonError('INTERNAL', `cannot create the directory of lock file ${path}: ${errorMessage(err)}`);
  }
  let waiting = false;
  for (;;) {
    if (await createExclusive(path, content(), token)) return { token, stale: null };
    const held = await readHeld(path);
    if (held === null) continue; // released in between: try again at once
    if (isStale(held)) {
      if (await takeOver(path, held, content(), token)) return { token, stale: held };
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      const h = held.holder;
      const who = h === null ? 'an unreadable lock file' : `pid ${h.pid} (${h.purpose}, since ${h.acquiredAt})`;
      throw new BatonError(
        'LOCK_TIMEOUT',
        `lock ${path} is held by ${who}; gave up waiting for ${opts.purpose} after ${formatDuration(opts.timeoutMs)}`,
      );
    }
    if (!waiting) {
      waiting = true;
      opts.onWait?.(held.holder);
    }
    await sleep(Math.min(pollMs, left));
  }
}

/** Whether the holder is gone. The holder's own process never counts as stale. */
function isStale(held: Held): boolean {
  const h = held.holder;
  if (h === null) return Date.now() - held.mtimeMs > UNREADABLE_STALE_MS;
  if (h.pid === process.pid) return h.startTime !== '' && h.startTime !== readProcStat(process.pid)?.startTime;
  if (h.startTime === '') {
    const stat = readProcStat(h.pid);
    return stat === null || isDeadState(stat.state);
  }
  return !isSameProcessAlive(h.pid, h.startTime);
}

/**
 * Replace a stale lock file, if it still is the one judged stale, under the
 * guard `path.takeover`. False when someone else is taking it over or got the
 * lock first.
 */
async function takeOver(path: string, stale: Held, content: string, token: string): Promise<boolean> {
  const guard = `${path}.takeover`;
  if (!(await createExclusive(guard, content, token))) {
    const g = await readHeld(guard);
    if (g !== null && (isStale(g) || Date.now() - g.mtimeMs > GUARD_STALE_MS)) {
      const again = await readHeld(guard);
      if (again?.raw === g.raw) await unlinkQuiet(guard);
    }
    return false;
  }
  try {
    const now = await readHeld(path);
    if (now === null || now.raw !== stale.raw) return false;
    await unlinkQuiet(path);
    return await createExclusive(path, content, token);
  } finally {
    const g = await readHeld(guard);
    if (g?.holder?.token === token) await unlinkQuiet(guard);
  }
}

/** Create `path` with `content` unless it exists. True if created. */
async function createExclusive(path: string, content: string, token: string): Promise<boolean> {
  const tmp = `${path}.${process.pid}.${token}.tmp`;
  try {
    await writeFile(tmp, content, { flag: 'wx', mode: 0o644 });
  } catch (err) {
    throw new BatonError('INTERNAL', `cannot write lock file ${tmp}: ${errorMessage(err)}`);
  }
  try {
    await link(tmp, path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') return createWithExcl(path, content);
    throw new BatonError('INTERNAL', `cannot create lock file ${path}: ${errorMessage(err)}`);
  } finally {
    await unlinkQuiet(tmp);
  }
}

/** For file systems without hard links: O_CREAT|O_EXCL, then write (readers may briefly see it empty). */
async function createWithExcl(path: string, content: string): Promise<boolean> {
  try {
    await writeFile(path, content, { flag: 'wx', mode: 0o644 });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new BatonError('INTERNAL', `cannot create lock file ${path}: ${errorMessage(err)}`);
  }
}

async function readHeld(path: string): Promise<Held | null> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new BatonError('INTERNAL', `cannot read lock file ${path}: ${errorMessage(err)}`);
  }
  try {
    const st = await fh.stat();
    const raw = await fh.readFile('utf8');
    return { raw, holder: parseHolder(raw), mtimeMs: st.mtimeMs };
  } finally {
    await fh.close();
  }
}

export function parseHolder(raw: string): LockHolder | null {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  if (typeof o.pid !== 'number' || !Number.isInteger(o.pid) || o.pid <= 0) return null;
  return {
    pid: o.pid,
    startTime: typeof o.startTime === 'string' ? o.startTime : '',
    purpose: typeof o.purpose === 'string' ? o.purpose : 'unknown purpose',
    acquiredAt: typeof o.acquiredAt === 'string' ? o.acquiredAt : '?',
    token: typeof o.token === 'string' ? o.token : '',
  };
}

async function unlinkQuiet(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
