import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameTracker, clientCloseFrame, serverCloseFrame } from '../../src/proxy/ws-frames.ts';

type LenForm = 7 | 16 | 64;

/** One WebSocket frame with `len` payload bytes, its length written in the given form. */
function frame(opcode: number, len: number, masked: boolean, form: LenForm = len < 126 ? 7 : len < 65536 ? 16 : 64): Buffer {
  const ext = form === 7 ? 0 : form === 16 ? 2 : 8;
  const head = Buffer.alloc(2 + ext + (masked ? 4 : 0));
  head[0] = 0x80 | opcode;
  head[1] = (masked ? 0x80 : 0) | (form === 7 ? len : form === 16 ? 126 : 127);
  if (form === 16) head.writeUInt16BE(len, 2);
  if (form === 64) head.writeBigUInt64BE(BigInt(len), 2);
  if (masked) head.set([1, 2, 3, 4], 2 + ext);
  // Payload bytes that look like frame headers, to catch a tracker that reads payload as headers.
  return Buffer.concat([head, Buffer.alloc(len, 0x81)]);
}

/** A stream of frames and the offsets where each ends. */
function stream(frames: Buffer[]): { bytes: Buffer; ends: number[] } {
  const ends: number[] = [];
  let at = 0;
  for (const f of frames) ends.push((at += f.length));
  return { bytes: Buffer.concat(frames), ends };
}

const SAMPLE = stream([
  frame(0x1, 5, false), // text, 7-bit length
  frame(0x2, 0, true), // empty binary, masked
  frame(0x2, 126, true, 16), // 16-bit length, masked
  frame(0x9, 3, false), // ping
  frame(0x2, 300, false, 16), // 16-bit length
  frame(0x2, 70_000, true, 64), // 64-bit length, masked
  frame(0x2, 10, false, 64), // 64-bit form of a small length
  frame(0x0, 1, false), // continuation
]);

test('boundaries are exact when fed one byte at a time', () => {
  const t = new FrameTracker();
  const seen: number[] = [];
  assert.equal(t.atBoundary, true);
  for (let i = 0; i < SAMPLE.bytes.length; i++) {
    t.push(SAMPLE.bytes.subarray(i, i + 1));
    if (t.atBoundary) seen.push(i + 1);
  }
  assert.deepEqual(seen, SAMPLE.ends);
  assert.equal(t.frames, SAMPLE.ends.length);
  assert.equal(t.broken, false);
});

test('boundaries survive arbitrary fragmentation (deterministic splits)', () => {
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return 1 + (seed % n);
  };
  for (const maxChunk of [2, 3, 7, 64, 1000, 100_000]) {
    const t = new FrameTracker();
    let at = 0;
    while (at < SAMPLE.bytes.length) {
      const n = Math.min(rand(maxChunk), SAMPLE.bytes.length - at);
      assert.equal(t.push(SAMPLE.bytes.subarray(at, at + n)), n);
      at += n;
      assert.equal(t.atBoundary, SAMPLE.ends.includes(at), `maxChunk ${maxChunk} at ${at}`);
    }
    assert.equal(t.frames, SAMPLE.ends.length);
  }
});

test('push with untilBoundary stops right after the first frame that completes', () => {
  const t = new FrameTracker();
  const b = SAMPLE.bytes;
  // At a boundary already: stops where it starts.
  assert.equal(t.push(b, 0, true), 0);
  // Step through: each call ends at the next frame end.
  let at = 0;
  for (const end of SAMPLE.ends) {
    // Start mid-frame (1 or 3 bytes in): from a boundary, push stops where it starts.
    const step = end - at > 4 ? 3 : 1;
    t.push(b.subarray(0, at + step), at);
    assert.equal(t.atBoundary, false);
    at += step;
    // Offsets are relative to the chunk given: use the whole buffer with a start offset.
    assert.equal(t.push(b, at, true), end);
    assert.equal(t.atBoundary, true);
    at = end;
  }
  // A frame split across chunks: the first chunk never reaches a boundary.
  const t2 = new FrameTracker();
  const f = frame(0x1, 20, true);
  t2.push(f.subarray(0, 3));
  assert.equal(t2.push(f.subarray(0, 10), 3, true), 10);
  assert.equal(t2.atBoundary, false);
  assert.equal(t2.push(Buffer.concat([f.subarray(10), frame(0x1, 1, true)]), 0, true), f.length - 10);
  assert.equal(t2.atBoundary, true);
});

test('a completed close frame is noticed; a partial one is not', () => {
  const t = new FrameTracker();
  t.push(frame(0x1, 2, false));
  assert.equal(t.closeSeen, false);
  const close = serverCloseFrame();
  t.push(close.subarray(0, close.length - 1));
  assert.equal(t.closeSeen, false);
  t.push(close.subarray(close.length - 1));
  assert.equal(t.closeSeen, true);
  assert.equal(t.lastOpcode, 0x8);
});

test('a 64-bit length with the top bit set marks the stream broken', () => {
  const t = new FrameTracker();
  const head = Buffer.from([0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1]);
  t.push(head);
  assert.equal(t.broken, true);
  assert.equal(t.atBoundary, false);
});

test('close frames baton injects: 1001, unmasked to clients, masked to instances', () => {
  const s = serverCloseFrame();
  assert.equal(s[0], 0x88);
  assert.equal(s[1]! & 0x80, 0);
  assert.equal(s.readUInt16BE(2), 1001);
  assert.equal(s.subarray(4).toString(), 'going away');

  const c = clientCloseFrame(1001, Buffer.from('bye'), Buffer.from([9, 8, 7, 6]));
  assert.equal(c[0], 0x88);
  assert.equal(c[1], 0x80 | 5);
  const mask = c.subarray(2, 6);
  const payload = Buffer.from(c.subarray(6).map((b, i) => b ^ mask[i & 3]!));
  assert.equal(payload.readUInt16BE(0), 1001);
  assert.equal(payload.subarray(2).toString(), 'bye');

  // Both are one complete close frame for the tracker.
  for (const f of [s, clientCloseFrame()]) {
    const t = new FrameTracker();
    t.push(f);
    assert.equal(t.atBoundary, true);
    assert.equal(t.closeSeen, true);
  }
});
