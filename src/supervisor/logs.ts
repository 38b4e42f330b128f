// Instance log files: how an instance's output gets into its file (with a
// timestamp per line, rotated by size, by a small writer that outlives the
// daemon like the instance does), reading the last lines (from the end, so big
// files cost nothing), following new lines as they are appended, and following
// a whole service across deploys.

import { open, readdir, rm, stat, type FileHandle } from 'node:fs/promises';
import { existsSync, realpathSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';

// ---------------------------------------------------------------------------
// Writing: the log writer.
//
// The instance must not depend on the daemon (it outlives it), so its output
// cannot go through the daemon. Instead the instance's shell starts a writer
// beside the app, in the app's process group: the app's stdout and stderr go
// to it through a FIFO, and it prefixes each line with a timestamp, appends it
// to the log file and rotates the file by size (<id>.log → <id>.log.1 …,
// keeping `keep` older files), even while no daemon runs. The writer is awk
// (mawk is part of every Debian: about 1 MB per instance, against ~40 MB for
// a Node process). It ignores the stop signals (HUP INT QUIT TERM USR1 USR2
// WINCH) so that the app's last lines during a graceful stop are written, and
// exits at end of input, when the app has exited; SIGKILL to the group ends it
// with the app. The writer runs as the daemon's user (root, when apps run as
// their own user): the app never needs write access to the logs directory.
// Without awk, mkfifo and setpriv on the host the output goes straight to the
// file as before, without timestamps or rotation.

const AWK = '/usr/bin/awk';
const TOOLS = [AWK, '/usr/bin/mkfifo', '/usr/bin/setpriv', '/bin/rm'];
const WRITER_AVAILABLE = TOOLS.every((t) => existsSync(t));
/** mawk reads a pipe in blocks unless told to read line by line. */
const AWK_ARGS = WRITER_AVAILABLE && realpathSync(AWK).includes('mawk') ? ['-W', 'interactive'] : [];

/** awk: timestamp, append, rotate past MAX keeping KEEP files. Paths come from the environment (no escape processing). */
const WRITER_PROGRAM = `
function rotate(  i) {
  close(file)
  if (keep <= 0) { printf "" > file; close(file); return }
  # The shell reads the path from the environment: no quoting of file names.
  for (i = keep - 1; i >= 1; i--) system("[ ! -e \\"$BATON_LOG." i "\\" ] || /bin/mv -f \\"$BATON_LOG." i "\\" \\"$BATON_LOG." (i + 1) "\\"")
  system("/bin/mv -f \\"$BATON_LOG\\" \\"$BATON_LOG.1\\"")
}
BEGIN { file = ENVIRON["BATON_LOG"]; max = ENVIRON["BATON_LOG_MAX"] + 0; keep = ENVIRON["BATON_LOG_KEEP"] + 0; n = 0 }
{
  line = strftime("%Y-%m-%dT%H:%M:%S%z") " " $0
  print line >> file
  fflush(file)
  n += length(line) + 1
  if (max > 0 && n >= max) { rotate(); n = 0 }
}
`;

// $1 command, $2 log file, $3 max bytes, $4 keep, $5 uid, $6 gid, $7 awk program, $8… awk options.
// The FIFO is removed once both ends are open; exec keeps the pid: the
// instance's pid is the app's, the leader of its process group.
const LAUNCHER = `
cmd=$1 log=$2 max=$3 keep=$4 uid=$5 gid=$6 prog=$7
shift 7
fifo="$log.fifo"
/bin/rm -f "$fifo"
/usr/bin/mkfifo -m 600 "$fifo" || exit 70
(
  trap '' HUP INT QUIT TERM USR1 USR2 WINCH
  export BATON_LOG="$log" BATON_LOG_MAX="$max" BATON_LOG_KEEP="$keep"
  exec ${AWK} "$@" "$prog" < "$fifo"
) &
exec > "$fifo" 2>&1
/bin/rm -f "$fifo"
if [ -n "$uid" ]; then exec /usr/bin/setpriv --reuid="$uid" --regid="$gid" --clear-groups /bin/sh -c "$cmd"; fi
exec /bin/sh -c "$cmd"
`;

export interface InstanceLaunch {
  /** Arguments of /bin/sh. */
  args: string[];
  /** Set the ids at spawn (no writer: the shell itself runs as the app's user). */
  spawnAs: { uid: number; gid: number } | null;
  /** Lines get timestamps and the file is rotated. */
  writer: boolean;
}

/** How to start an instance's command so that its output reaches logFile. */
export function instanceLaunch(o: { command: string; logFile: string; maxBytes: number; keep: number; runAs: { uid: number; gid: number } | null }): InstanceLaunch {
  if (!WRITER_AVAILABLE) return { args: ['-c', o.command], spawnAs: o.runAs, writer: false };
  return {
    args: ['-c', LAUNCHER, 'baton-instance', o.command, o.logFile, String(o.maxBytes), String(o.keep), o.runAs ? String(o.runAs.uid) : '', o.runAs ? String(o.runAs.gid) : '', WRITER_PROGRAM, ...AWK_ARGS],
    spawnAs: null,
    writer: true,
  };
}

const CHUNK = 64 * 1024;
/** Fallback re-check while following, in case a file-system event is missed. */
const FOLLOW_POLL_MS = 500;
const NL = 0x0a;

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

/** The last `lines` lines of `file` (without their newlines); [] if the file does not exist. */
export async function tailLog(file: string, lines: number): Promise<string[]> {
  if (lines <= 0) return [];
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    if (isMissing(err)) return [];
    throw err;
  }
  try {
    const { size } = await fh.stat();
    const chunks: Buffer[] = [];
    let pos = size;
    let newlines = 0;
    // A final newline ends the last line; it does not start an empty one.
    let skipFinal = true;
    // Read backwards until we have seen more newlines than the lines we need.
    while (pos > 0 && newlines <= lines) {
      const len = Math.min(CHUNK, pos);
      pos -= len;
      const buf = Buffer.allocUnsafe(len);
      const { bytesRead } = await fh.read(buf, 0, len, pos);
      const chunk = buf.subarray(0, bytesRead);
      for (let i = chunk.length - 1; i >= 0; i--) {
        if (chunk[i] !== NL) continue;
        if (skipFinal && pos + i === size - 1) continue;
        newlines++;
      }
      skipFinal = false;
      chunks.unshift(chunk);
    }
    // Splitting on "\n" after decoding is safe: 0x0a never occurs inside a multi-byte UTF-8 sequence.
    let text = Buffer.concat(chunks).toString('utf8');
    if (text.endsWith('\n')) text = text.slice(0, -1);
    if (text === '') return [];
    const all = text.split('\n');
    // The first piece may be a partial line when we stopped reading mid-file.
    return all.slice(-lines);
  } finally {
    await fh.close();
  }
}

/**
 * Call `onLines` with each batch of complete lines appended to `file`, like
 * `tail -f`: starts at the current end (or at the start of a file created
 * later), starts over when the file is truncated or replaced. Resolves when
 * `signal` aborts (a last partial line is delivered then).
 */
export async function followLog(file: string, onLines: (lines: string[]) => void, signal: AbortSignal, from: 'end' | 'start' = 'end'): Promise<void> {
  if (signal.aborted) return;
  let pos = 0;
  let ino: number | null = null;
  try {
    const st = await stat(file);
    pos = from === 'end' ? st.size : 0;
    ino = st.ino;
  } catch (err) {
    if (!isMissing(err)) throw err;
  }
  let partial = '';
  // Keeps a multi-byte character that straddles two reads whole.
  let decoder = new StringDecoder('utf8');
  let wake: (() => void) | null = null;
  const poke = (): void => wake?.();
  signal.addEventListener('abort', poke, { once: true });
  let watcher: FSWatcher | null = null;
  const closeWatcher = (): void => {
    watcher?.close();
    watcher = null;
  };
  const ensureWatcher = (): void => {
    if (watcher !== null) return;
    try {
      // A replaced file (rotation) makes the watcher stale: on error drop it and rewatch.
      watcher = watch(file, { persistent: false }, poke).on('error', closeWatcher);
    } catch {
      watcher = null; // not there yet: the poll below will find it
    }
  };
  try {
    while (!signal.aborted) {
      ensureWatcher();
      const read = await readNew(file, pos, ino);
      if (read !== null) {
        if (read.restarted) {
          partial = '';
          decoder = new StringDecoder('utf8');
          closeWatcher();
          ensureWatcher();
        }
        pos = read.pos;
        ino = read.ino;
        const text = decoder.write(read.bytes);
        if (text !== '') {
          const pieces = (partial + text).split('\n');
          partial = pieces.pop() ?? '';
          if (pieces.length > 0) onLines(pieces);
        }
        if (read.more) continue;
      }
      // Wait for a change event, the fallback poll, or the abort.
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, FOLLOW_POLL_MS);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
        if (signal.aborted) wake();
      });
      wake = null;
    }
    partial += decoder.end();
    if (partial !== '') onLines([partial]);
  } finally {
    signal.removeEventListener('abort', poke);
    closeWatcher();
  }
}

interface NewBytes {
  bytes: Buffer;
  pos: number;
  ino: number;
  /** The file was truncated or replaced: reading started over at 0. */
  restarted: boolean;
  /** More bytes are waiting beyond this read. */
  more: boolean;
}

/** Read what was appended after `pos`; null when the file does not exist (yet). */
async function readNew(file: string, pos: number, ino: number | null): Promise<NewBytes | null> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
  try {
    const st = await fh.stat();
    let restarted = false;
    if ((ino !== null && st.ino !== ino) || st.size < pos) {
      pos = 0;
      restarted = true;
    }
    const len = Math.min(st.size - pos, 4 * CHUNK);
    if (len <= 0) return { bytes: Buffer.alloc(0), pos, ino: st.ino, restarted, more: false };
    const buf = Buffer.allocUnsafe(len);
    const { bytesRead } = await fh.read(buf, 0, len, pos);
    return { bytes: buf.subarray(0, bytesRead), pos: pos + bytesRead, ino: st.ino, restarted, more: pos + bytesRead < st.size };
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------
// Reading a service's logs: live instances, and those that stopped or failed.

export interface LogSource {
  /** Instance id (the file name without .log). */
  id: string;
  file: string;
  live: boolean;
}

/**
 * The instance logs of a service still on disk that belong to no live
 * instance, newest first, at most `limit`: after a failed deploy, the
 * instances that crashed; after a good one, those that were stopped.
 * Rotated files (.log.1 …) and hook logs (deploy-*) are not instance logs.
 */
export async function stoppedLogs(dir: string, live: ReadonlySet<string>, limit: number): Promise<LogSource[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (isMissing(err)) return [];
    throw err;
  }
  const found: { src: LogSource; mtime: number }[] = [];
  for (const name of names) {
    if (!name.endsWith('.log') || name.startsWith('deploy-')) continue;
    const id = name.slice(0, -'.log'.length);
    if (live.has(id)) continue;
    const file = path.join(dir, name);
    const st = await stat(file).catch(() => null);
    if (st?.isFile()) found.push({ src: { id, file, live: false }, mtime: st.mtimeMs });
  }
  return found.sort((a, b) => b.mtime - a.mtime).slice(0, limit).map((f) => f.src);
}

/** Logs of stopped instances kept per service (`baton logs` shows the newest of them). */
export const STOPPED_LOGS_KEPT = 20;

/**
 * Delete the logs of stopped instances beyond the newest `keep` (with their
 * rotated files): one file per instance ever started would otherwise fill the
 * disk over months of deploys. Returns the instance ids whose logs went.
 */
export async function pruneStoppedLogs(dir: string, live: ReadonlySet<string>, keep = STOPPED_LOGS_KEPT): Promise<string[]> {
  const stopped = await stoppedLogs(dir, live, Number.MAX_SAFE_INTEGER);
  const victims = stopped.slice(keep);
  if (victims.length === 0) return [];
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const v of victims) {
    const prefix = `${v.id}.log`;
    // <id>.log, its rotated <id>.log.N, and a FIFO left by a launch that never ran.
    for (const n of names) if (n === prefix || n.startsWith(`${prefix}.`)) await rm(path.join(dir, n), { force: true });
  }
  return victims.map((v) => v.id);
}

/** How long a follower keeps reading an instance's log after the instance left (its last lines). */
const LEFT_GRACE_MS = 3_000;
const RESCAN_MS = 250;

/**
 * `baton logs SERVICE --follow`: follow every live instance's log, and the
 * logs of instances that start later (a deploy, a restart) from their first
 * line. `live()` is asked again every RESCAN_MS. Resolves when signal aborts.
 */
export async function followService(live: () => LogSource[], onLine: (id: string, line: string) => void, signal: AbortSignal): Promise<void> {
  const followers = new Map<string, { ac: AbortController; done: Promise<void>; leftAt: number | null }>();
  const start = (src: LogSource, from: 'end' | 'start'): void => {
    const ac = new AbortController();
    const done = followLog(src.file, (lines) => {
      for (const l of lines) onLine(src.id, l);
    }, AbortSignal.any([signal, ac.signal]), from).catch(() => {});
    followers.set(src.id, { ac, done, leftAt: null });
  };
  for (const src of live()) start(src, 'end');
  while (!signal.aborted) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, RESCAN_MS);
      signal.addEventListener('abort', () => {
        clearTimeout(t);
        resolve();
      }, { once: true });
    });
    if (signal.aborted) break;
    const now = Date.now();
    const current = new Map(live().map((s) => [s.id, s]));
    for (const [id, src] of current) if (!followers.has(id)) start(src, 'start');
    for (const [id, f] of followers) {
      if (current.has(id)) f.leftAt = null;
      else if (f.leftAt === null) f.leftAt = now;
      else if (now - f.leftAt > LEFT_GRACE_MS) {
        f.ac.abort();
        await f.done;
        followers.delete(id);
      }
    }
  }
  await Promise.all([...followers.values()].map((f) => f.done));
}
