// A proxy worker's access log lines on their way to the control plane, which
// alone writes the file (src/daemon/workers.ts): one writer, so rotation by
// size is exact and a reload's reopen is one action, as with one process.
// Lines are batched (one IPC message per FLUSH_MS or per BATCH_BYTES, not one
// per request) and bounded: beyond MAX_PENDING characters waiting — batched
// here or sent and not yet handed to the kernel — a line is refused, and the
// worker's access log counts it dropped, as a slow disk does in one process.

import { MAX_PENDING } from '../proxy/access-log.ts';

const FLUSH_MS = 50;
const BATCH_BYTES = 64 * 1024;

/** Send one batch; `done` once it left this process (or never will). */
export type SendLines = (text: string, count: number, done: () => void) => void;

export class AccessLineBatcher {
  readonly #send: SendLines;
  #lines: string[] = [];
  #batched = 0;
  /** Characters sent whose message is still in this process's IPC queue. */
  #inFlight = 0;
  #timer: NodeJS.Timeout | null = null;

  constructor(send: SendLines) {
    this.#send = send;
  }

  /** The AccessLog's forward: true when taken. */
  readonly push = (line: string): boolean => {
    if (this.#batched + this.#inFlight + line.length > MAX_PENDING) return false;
    this.#lines.push(line);
    this.#batched += line.length;
    if (this.#batched >= BATCH_BYTES) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), FLUSH_MS).unref();
    return true;
  };

  /** Send what is batched now (also before the worker's last report). */
  flush(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#lines.length === 0) return;
    const text = this.#lines.join('');
    const count = this.#lines.length;
    const size = this.#batched;
    this.#lines = [];
    this.#batched = 0;
    this.#inFlight += size;
    this.#send(text, count, () => (this.#inFlight -= size));
  }
}
