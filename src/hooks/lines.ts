// Splitting a byte stream into text lines: bytes are buffered until a newline
// (so a UTF-8 character split across chunks is decoded whole), a line longer
// than MAX_LINE_BYTES is cut on a character boundary, and invalid UTF-8
// (binary output) decodes to U+FFFD instead of breaking anything.

/** Longest line handed on; longer ones are split into several. */
export const MAX_LINE_BYTES = 8 * 1024;

const NL = 0x0a;
const CR = 0x0d;

export class LineSplitter {
  #pending: Buffer = Buffer.alloc(0);
  readonly #emit: (line: string) => void;
  readonly #max: number;

  constructor(emit: (line: string) => void, maxLineBytes = MAX_LINE_BYTES) {
    this.#emit = emit;
    this.#max = Math.max(4, maxLineBytes);
  }

  push(chunk: Buffer): void {
    const buf = this.#pending.length > 0 ? Buffer.concat([this.#pending, chunk]) : chunk;
    let start = 0;
    for (let nl = buf.indexOf(NL, start); nl >= 0; nl = buf.indexOf(NL, start)) {
      let end = nl;
      if (end > start && buf[end - 1] === CR) end--;
      this.#emitLong(buf.subarray(start, end), true);
      start = nl + 1;
    }
    // What is left has no newline: cut it while it is too long, keep the rest
    // (copied, so a large chunk is not retained for a few bytes).
    start = this.#emitLong(buf.subarray(start), false) + start;
    this.#pending = Buffer.from(buf.subarray(start));
  }

  /** The stream ended: hand on a last line without a newline. */
  end(): void {
    if (this.#pending.length > 0) {
      let line = this.#pending;
      if (line[line.length - 1] === CR) line = line.subarray(0, -1);
      this.#pending = Buffer.alloc(0);
      this.#emitLong(line, true);
    }
  }

  /**
   * Emit `bytes` in pieces of at most #max bytes. With `complete`, all of it
   * (an empty line too); otherwise only full-size pieces. Returns the number of
   * bytes emitted.
   */
  #emitLong(bytes: Buffer, complete: boolean): number {
    let at = 0;
    while (bytes.length - at > this.#max || (!complete && bytes.length - at === this.#max)) {
      const cut = at + utf8Boundary(bytes, at + this.#max, at);
      this.#emit(bytes.toString('utf8', at, cut));
      at = cut;
    }
    if (complete) {
      this.#emit(bytes.toString('utf8', at));
      at = bytes.length;
    }
    return at;
  }
}

/**
 * Offset (relative to `from`) at or before `limit` at which no UTF-8 character
 * is cut: back up over at most 3 continuation bytes. Invalid sequences are cut
 * at `limit` as they are.
 */
function utf8Boundary(bytes: Buffer, limit: number, from: number): number {
  const isContinuation = (i: number): boolean => ((bytes[i] ?? 0) & 0xc0) === 0x80;
  let cut = limit;
  while (cut > from && limit - cut < 3 && isContinuation(cut)) cut--;
  if (cut === from || isContinuation(cut)) cut = limit;
  return cut - from;
}

/** The last `size` lines seen. */
export class Tail {
  readonly #size: number;
  #lines: string[] = [];

  constructor(size: number) {
    this.#size = size;
  }

  push(line: string): void {
    this.#lines.push(line);
    if (this.#lines.length > this.#size * 2) this.#lines = this.#lines.slice(-this.#size);
  }

  lines(): string[] {
    return this.#lines.slice(-this.#size);
  }
}
