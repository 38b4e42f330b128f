// Instance log files: reading the last lines (from the end, so big files cost
// nothing) and following new lines as they are appended.

import { open, stat, type FileHandle } from 'node:fs/promises';
import { watch, type FSWatcher } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';

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
export async function followLog(file: string, onLines: (lines: string[]) => void, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  let pos = 0;
  let ino: number | null = null;
  try {
    const st = await stat(file);
    pos = st.size;
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
