// Line splitting of hook output, the tail, and hookError's messages.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LineSplitter, MAX_LINE_BYTES, Tail } from '../../src/hooks/lines.ts';
import { hookError, type HookRun } from '../../src/hooks/index.ts';
import { BatonError } from '../../src/core/errors.ts';

function split(chunks: (string | Buffer)[], max?: number): string[] {
  const out: string[] = [];
  const s = new LineSplitter((l) => out.push(l), max);
  for (const c of chunks) s.push(typeof c === 'string' ? Buffer.from(c) : c);
  s.end();
  return out;
}

test('lines across chunk boundaries, CRLF, empty lines, a last line without newline', () => {
  assert.deepEqual(split(['a', 'b\nc', 'd\r\n\n', 'e\r', '\nlast']), ['ab', 'cd', '', 'e', 'last']);
  assert.deepEqual(split(['one\n']), ['one']);
  assert.deepEqual(split([]), []);
});

test('a UTF-8 character split across chunks is decoded whole', () => {
  const bytes = Buffer.from('héllo ✓\n');
  const chunks = [...bytes].map((b) => Buffer.from([b])); // one byte at a time
  assert.deepEqual(split(chunks), ['héllo ✓']);
});

test('a long line is split at 8 KiB, never inside a character', () => {
  const long = 'x'.repeat(MAX_LINE_BYTES * 2 + 100);
  const out = split([long + '\nnext\n']);
  assert.deepEqual(out.map((l) => l.length), [MAX_LINE_BYTES, MAX_LINE_BYTES, 100, 4]);
  assert.equal(out.slice(0, 3).join(''), long);

  // 3-byte characters: 8192 is not a multiple of 3, the cut backs up to a boundary.
  const wide = '✓'.repeat(6000); // 18000 bytes
  const pieces = split([wide]);
  assert.ok(pieces.every((p) => !p.includes('\ufffd')), 'no character was cut');
  assert.ok(pieces.every((p) => Buffer.byteLength(p) <= MAX_LINE_BYTES));
  assert.equal(pieces.join(''), wide);

  // Without any newline, pieces come out while the stream is still open.
  const got: string[] = [];
  const s = new LineSplitter((l) => got.push(l), 10);
  s.push(Buffer.from('abcdefghijklmnopqrstuvwxy'));
  assert.deepEqual(got, ['abcdefghij', 'klmnopqrst']);
  s.end();
  assert.deepEqual(got, ['abcdefghij', 'klmnopqrst', 'uvwxy']);
});

test('binary output decodes without throwing', () => {
  const bin = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x0a, 0xc3, 0x0a, 0xe2, 0x9c]);
  const out = split([bin]);
  assert.equal(out.length, 3);
  assert.ok(out[0]!.includes('\ufffd'));
  const noise = Buffer.alloc(100_000);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919 + 13) & 0xff;
  const lines = split([noise], 1000);
  assert.ok(lines.every((l) => Buffer.byteLength(l) <= 1000 * 3), 'bounded (replacement characters may widen a piece)');
});

test('Tail keeps the last lines', () => {
  const t = new Tail(3);
  for (let i = 0; i < 100; i++) t.push(String(i));
  assert.deepEqual(t.lines(), ['97', '98', '99']);
  const short = new Tail(40);
  short.push('a');
  assert.deepEqual(short.lines(), ['a']);
});

function run(over: Partial<HookRun>): HookRun {
  return { name: 'build', exitCode: 0, signal: null, timedOut: false, durationMs: 3100, tail: ['last line'], logFile: '/x.log', ...over };
}

test('hookError: null on success, messages with exit code, signal, duration, timeout', () => {
  assert.equal(hookError(run({})), null);

  const failed = hookError(run({ exitCode: 2 }));
  assert.ok(failed instanceof BatonError);
  assert.equal(failed.code, 'HOOK_FAILED');
  assert.equal(failed.message, 'build hook failed (exit 2) after 3.1s');
  assert.deepEqual(failed.details, ['last line']);

  assert.equal(hookError(run({ name: 'migrate', exitCode: null, signal: 'SIGKILL', durationMs: 450 }))?.message, 'migrate hook failed (killed by SIGKILL) after 450ms');
  assert.equal(
    hookError(run({ name: 'smoke', exitCode: null, signal: 'SIGTERM', timedOut: true, timeoutMs: 60_000, durationMs: 60_020 }))?.message,
    'smoke hook timed out after 60s (killed)',
  );
  // Without the limit recorded, the duration stands in for it.
  assert.equal(hookError(run({ exitCode: null, signal: 'SIGTERM', timedOut: true, durationMs: 2500 }))?.message, 'build hook timed out after 2.5s (killed)');
  assert.equal(hookError(run({ name: 'after_switch', exitCode: null, signal: 'SIGTERM', aborted: true, durationMs: 400 }))?.message, 'after_switch hook aborted after 400ms');
  // A timed-out run counts as failed even if the shell happened to exit 0 while being stopped.
  assert.ok(hookError(run({ exitCode: 0, timedOut: true, timeoutMs: 1000 })));
});
