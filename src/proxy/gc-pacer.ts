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
// 1 MB young generation costs a fraction of a millisecond; small requests never
// reach the step.
//
// The collector is the one `--expose-gc` gives (bin/baton.js starts the daemon
// with it); without it (tests, other entries) this does nothing.

/** Bytes streamed between two young-generation collections. */
export const GC_STEP_BYTES = 2 * 1024 * 1024;

type Collect = (options: { type: 'minor' | 'major'; execution: 'sync' | 'async' }) => void;
const collect = (globalThis as { gc?: Collect }).gc ?? null;
let streamed = 0;

/** `n` bytes of a body (or of a WebSocket tunnel) went through. */
export function bodyBytes(n: number): void {
  if (collect === null) return;
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
