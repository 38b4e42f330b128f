// Garbage collection paced by the bytes baton streams.
//
// Every socket read of a proxied body lands in a fresh 64 KiB ArrayBuffer
// (node's stream read buffers), taken from glibc's main heap. V8 frees them only
// when it collects their wrappers, and it schedules collections by how much
// JavaScript allocates, which is little per chunk: a GiB streamed between two
// collections leaves tens of MiB of dead buffers on the heap, and glibc keeps the
// heap's high-water mark resident for good (measured: +25 to +38 MiB of the
// daemon's RSS after a 1 GiB download and upload, all of it in [heap]).
// Collecting the young generation after every few MiB streamed keeps the dead
// buffers, and so the heap's high-water mark, to that bound. A scavenge of the
// daemon's small young generation (4 MB semi-spaces) costs a fraction of a
// millisecond; small requests never reach the step.
//
// Once a burst of traffic is over (a check every IDLE_CHECK_MS saw body bytes,
// the next one none), one memory-reducing full collection ("last resort": V8
// collects everything it can, shrinks the young generation and gives its empty
// pages back) returns what the burst made V8 take: measured, the V8 heap stayed
// 8-10 MB above its idle size a minute after a load, its pages kept committed
// (bench/RESULTS.md, "proxy cost"). It runs at most once per burst, when no body
// has moved for a whole check interval, so busy daemons never pay for it (a
// request every 10 s is enough to keep it off). V8 runs it as at least two full
// collections (20-60 ms each, measured); one "regular" collection instead left
// the heap's pages committed (bench/RESULTS.md section 15).
//
// The collector is the one `--expose-gc` gives (bin/baton.js starts the daemon
// with it); without it (tests, other entries) this does nothing.

/** Bytes streamed between two young-generation collections. */
export const GC_STEP_BYTES = 2 * 1024 * 1024;

/** How often the pacer looks for the end of a burst of traffic. */
export const IDLE_CHECK_MS = 10_000;

type Collect = (options: { type: 'minor' | 'major'; execution: 'sync' | 'async'; flavor?: 'regular' | 'last-resort' }) => void;
const collect = (globalThis as { gc?: Collect }).gc ?? null;
let streamed = 0;
/** Body chunks since the last idle check. */
let chunks = 0;
/** The last idle check saw traffic. */
let busy = false;

function idleCheck(): void {
  if (chunks > 0) {
    chunks = 0;
    busy = true;
    return;
  }
  if (!busy) return;
  busy = false;
  collect!({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}

if (collect !== null) setInterval(idleCheck, IDLE_CHECK_MS).unref();

/** `n` bytes of a body (or of a WebSocket tunnel) went through. */
export function bodyBytes(n: number): void {
  if (collect === null) return;
  chunks++;
  streamed += n;
  if (streamed < GC_STEP_BYTES) return;
  streamed = 0;
  collect({ type: 'minor', execution: 'sync' });
}

/** A body chunk of a request being forwarded ('data' listener of the request; `this` unused). */
export function onRequestBodyData(chunk: Buffer): void {
  bodyBytes(chunk.length);
}

/** Whether pacing is on in this process. */
export function gcPacing(): boolean {
  return collect !== null;
}
