// Streaming WebSocket frame-boundary tracker (RFC 6455 5.2) and the close frames baton injects.
//
// baton never decodes payloads; it only needs to know, at any byte of a
// stream, whether it sits between two frames, so a close frame of its own can
// be inserted without splitting an application frame.

import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';

const OPCODE_CLOSE = 0x8;

export class FrameTracker {
  // Header bytes of the frame being read (at most 2 + 8 + 4).
  readonly #header = Buffer.alloc(14);
  #headerLen = 0;
  #headerNeed = 2;
  #payloadLeft = 0;
  #opcode = 0;
  #frames = 0;
  #closeSeen = false;
  #broken = false;

  /** Between two frames: no header byte and no payload byte of a frame pending. */
  get atBoundary(): boolean {
    return this.#headerLen === 0 && this.#payloadLeft === 0 && !this.#broken;
  }
  /** A complete close frame has passed. */
  get closeSeen(): boolean {
    return this.#closeSeen;
  }
  /** Complete frames seen so far. */
  get frames(): number {
    return this.#frames;
  }
  /** Opcode of the last complete frame (0 before the first). */
  get lastOpcode(): number {
    return this.#opcode;
  }
  /** The stream is not valid WebSocket framing; boundaries are unknown from here on. */
  get broken(): boolean {
    return this.#broken;
  }

  /**
   * Account for chunk[from..]. Returns the offset it stopped at: chunk.length,
   * or, with `untilBoundary`, the offset just past the first frame that
   * completes (or `from` itself if already at a boundary).
   */
  push(chunk: Uint8Array, from = 0, untilBoundary = false): number {
    const end = chunk.length;
    if (this.#broken) return end;
    if (untilBoundary && this.atBoundary) return from;
    let i = from;
    while (i < end) {
      if (this.#payloadLeft > 0) {
        const take = Math.min(this.#payloadLeft, end - i);
        this.#payloadLeft -= take;
        i += take;
        if (this.#payloadLeft === 0) {
          this.#frameDone();
          if (untilBoundary) return i;
        }
        continue;
      }
      this.#header[this.#headerLen++] = chunk[i++]!;
      if (this.#headerLen === 2) {
        const b1 = this.#header[1]!;
        const len7 = b1 & 0x7f;
        this.#headerNeed = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
      }
      if (this.#headerLen >= 2 && this.#headerLen === this.#headerNeed) {
        const length = this.#payloadLength();
        this.#opcode = this.#header[0]! & 0x0f;
        this.#headerLen = 0;
        this.#headerNeed = 2;
        if (length < 0) {
          this.#broken = true;
          return end;
        }
        if (length === 0) {
          this.#frameDone();
          if (untilBoundary) return i;
        } else {
          this.#payloadLeft = length;
        }
      }
    }
    return i;
  }

  #payloadLength(): number {
    const h = this.#header;
    const len7 = h[1]! & 0x7f;
    if (len7 < 126) return len7;
    if (len7 === 126) return h.readUInt16BE(2);
    const high = h.readUInt32BE(2);
    // RFC 6455: the most significant bit must be 0. Beyond 2^53 we could not count it exactly.
    if (high > 0x1fffff) return -1;
    return high * 0x1_0000_0000 + h.readUInt32BE(6);
  }

  #frameDone(): void {
    this.#frames++;
    if (this.#opcode === OPCODE_CLOSE) this.#closeSeen = true;
  }
}

/** Close status 1001: the endpoint is going away (here: the instance leaves service). */
export const CLOSE_GOING_AWAY = 1001;
const REASON = Buffer.from('going away');

/** Close frame as a server sends it (unmasked), for the client. */
export function serverCloseFrame(code = CLOSE_GOING_AWAY, reason: Uint8Array = REASON): Buffer {
  const frame = Buffer.alloc(4 + reason.length);
  frame[0] = 0x80 | OPCODE_CLOSE;
  frame[1] = 2 + reason.length;
  frame.writeUInt16BE(code, 2);
  frame.set(reason, 4);
  return frame;
}

/** Close frame as a client must send it (masked with a random key), for the instance. */
export function clientCloseFrame(code = CLOSE_GOING_AWAY, reason: Uint8Array = REASON, mask: Uint8Array = randomBytes(4)): Buffer {
  const payloadLen = 2 + reason.length;
  const frame = Buffer.alloc(6 + payloadLen);
  frame[0] = 0x80 | OPCODE_CLOSE;
  frame[1] = 0x80 | payloadLen;
  frame.set(mask.subarray(0, 4), 2);
  frame.writeUInt16BE(code, 6);
  frame.set(reason, 8);
  for (let i = 0; i < payloadLen; i++) frame[6 + i] = frame[6 + i]! ^ mask[i & 3]!;
  return frame;
}
