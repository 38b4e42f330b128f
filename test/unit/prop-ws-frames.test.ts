// Properties of the WebSocket frame-boundary tracker (src/proxy/ws-frames.ts),
// checked by fast-check: baton inserts its own close frame into a tunnel only
// where the tracker says a frame ends, so for any frames (every length
// encoding, masked or not) cut into any chunks, the boundaries it reports are
// exactly the frame ends; stopping at the next boundary stops there; and no
// bytes ever make it throw.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { clientCloseFrame, FrameTracker, serverCloseFrame } from '../../src/proxy/ws-frames.ts';
import { checkProperty } from '../helpers/property.ts';

interface Frame {
  bytes: Buffer;
  opcode: number;
}

/** A frame with the length in the form `encoding` asks for (7-bit, 16-bit or 64-bit, even when a shorter one would do). */
const frameArb: fc.Arbitrary<Frame> = fc
  .tuple(fc.boolean(), fc.constantFrom(0x0, 0x1, 0x2, 0x8, 0x9, 0xa, 0x3, 0xb), fc.option(fc.uint8Array({ minLength: 4, maxLength: 4 }), { nil: undefined }), fc.uint8Array({ maxLength: 300 }), fc.constantFrom(7, 16, 64))
  .map(([fin, opcode, mask, payload, encoding]) => {
    const n = payload.length;
    const enc = n > 125 && encoding === 7 ? 16 : encoding;
    const len = enc === 7 ? Buffer.from([n]) : enc === 16 ? Buffer.from([126, n >> 8, n & 0xff]) : Buffer.concat([Buffer.from([127]), Buffer.from([0, 0, 0, 0, 0, 0, n >> 8, n & 0xff])]);
    len[0] = len[0]! | (mask === undefined ? 0 : 0x80);
    return { bytes: Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode]), len, mask === undefined ? Buffer.alloc(0) : Buffer.from(mask), Buffer.from(payload)]), opcode };
  });
const framesArb = fc.oneof(
  { arbitrary: fc.array(frameArb, { minLength: 1, maxLength: 8 }), weight: 4 },
  { arbitrary: fc.array(frameArb, { maxLength: 4 }).map((fs) => [...fs, { bytes: clientCloseFrame(), opcode: 0x8 }, { bytes: serverCloseFrame(1000, Buffer.alloc(0)), opcode: 0x8 }]), weight: 1 },
);

/** `buf` cut at the given offsets (taken modulo its length, sorted, distinct). */
function chunked(buf: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, buf.length]) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  return out;
}

test('frame boundaries: however the stream is cut, a boundary is reported exactly where a frame ends, and frames, close and last opcode are counted', (t) => {
  checkProperty(
    t,
    fc.property(framesArb, fc.array(fc.nat(), { maxLength: 12 }), (frames, cuts) => {
      const stream = Buffer.concat(frames.map((f) => f.bytes));
      const ends = new Set<number>();
      let sum = 0;
      for (const f of frames) ends.add((sum += f.bytes.length));
      const tracker = new FrameTracker();
      let offset = 0;
      for (const chunk of chunked(stream, cuts)) {
        assert.equal(tracker.push(chunk), chunk.length);
        offset += chunk.length;
        assert.equal(tracker.atBoundary, offset === 0 || ends.has(offset), `at byte ${offset} of ${stream.length}`);
        assert.equal(tracker.frames, frames.filter((_, i) => [...ends][i]! <= offset).length);
      }
      assert.equal(tracker.broken, false);
      assert.equal(tracker.closeSeen, frames.some((f) => f.opcode === 0x8));
      assert.equal(tracker.lastOpcode, frames.at(-1)!.opcode);
    }),
    1500,
  );
});

test('frame boundaries: pushing until the next boundary stops just past the frame that completes, from any starting byte', (t) => {
  checkProperty(
    t,
    fc.property(framesArb, fc.nat(), (frames, startAt) => {
      const stream = Buffer.concat(frames.map((f) => f.bytes));
      const ends: number[] = [];
      let sum = 0;
      for (const f of frames) ends.push((sum += f.bytes.length));
      const start = startAt % (stream.length + 1);
      const tracker = new FrameTracker();
      tracker.push(stream.subarray(0, start));
      // The rest, in one chunk: the tracker stops at the first frame end after `start` (or at `start` on a boundary).
      const rest = stream.subarray(start);
      const stop = tracker.push(rest, 0, true);
      const expected = start === 0 || ends.includes(start) ? start : ends.find((e) => e > start)!;
      assert.equal(start + stop, expected);
      assert.equal(tracker.atBoundary, true);
    }),
    1500,
  );
});

test('frame boundaries: any bytes in any chunks never throw; once the framing is broken it stays broken, and is never a boundary', (t) => {
  checkProperty(
    t,
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)), framesArb.map((fs) => Buffer.concat(fs.map((f) => f.bytes)))), fc.array(fc.nat(), { maxLength: 8 }), fc.constantFrom(0x80, 0xff), (bytes, cuts, first) => {
      // A 64-bit length with its high bits set (RFC 6455: invalid) somewhere in the stream, sometimes.
      const poison = Buffer.from([0x82, 127, first, 0, 0, 0, 0, 0, 0, 1]);
      const stream = cuts.length % 2 === 0 ? bytes : Buffer.concat([bytes, poison]);
      const tracker = new FrameTracker();
      let wasBroken = false;
      for (const chunk of chunked(stream, cuts)) {
        tracker.push(chunk);
        if (wasBroken) assert.equal(tracker.broken, true);
        wasBroken = tracker.broken;
        if (tracker.broken) assert.equal(tracker.atBoundary, false);
      }
    }),
    2000,
  );
});
