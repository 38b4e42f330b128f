// The access log's writer: bounded memory when the disk lags (lines dropped and
// counted, never buffered without bound), rotation by size keeping `keep`
// files, and a path that cannot be opened refused with the key named.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IncomingMessage } from 'node:http';
import { AccessLog, MAX_PENDING } from '../../src/proxy/access-log.ts';
import type { BatonResponse, SnapshotRef } from '../../src/proxy/forwarder.ts';
import { BatonError } from '../../src/core/errors.ts';
import { silentLogger } from '../../src/core/log.ts';

async function dir(t: import('node:test').TestContext): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'baton-access-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

const ref = { current: { route: () => null } } as unknown as SnapshotRef;

/** One finished exchange through the log's request hook (a response object reduced to what the log reads). */
function exchange(log: AccessLog, path: string): void {
  const req = { url: path, method: 'GET', headers: { host: 'example.com' }, httpVersionMajor: 1, socket: { remoteAddress: '192.0.2.1' } } as unknown as IncomingMessage;
  const res = Object.assign(new EventEmitter(), { statusCode: 200, writableFinished: true, target: null, retries: 0, relayedBytes: 3 }) as unknown as BatonResponse;
  log.request(req, res, ref, performance.now());
  res.emit('close');
}

test('a disk slower than the traffic: lines beyond MAX_PENDING waiting are dropped and counted', async (t) => {
  const file = join(await dir(t), 'access.log');
  const log = new AccessLog({ path: file, maxBytes: 0, keep: 0 }, silentLogger);
  // One synchronous burst: the file stream cannot write anything before it ends.
  const n = 20_000;
  for (let i = 0; i < n; i++) exchange(log, `/p${i}`);
  const { written, dropped } = log.stats();
  assert.equal(written + dropped, n);
  assert.ok(dropped > 0, 'some lines were dropped');
  await log.close();
  const text = readFileSync(file, 'utf8');
  assert.ok(Buffer.byteLength(text) <= MAX_PENDING + 300, `at most MAX_PENDING bytes (and the line that crossed it) waited: ${Buffer.byteLength(text)}`);
  const lines = text.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, written, 'every kept line reached the file');
  const first = JSON.parse(lines[0]!);
  assert.deepEqual({ ...first, time: 'x', ms: 0 }, { time: 'x', client: '192.0.2.1', peer: '192.0.2.1', method: 'GET', host: 'example.com', path: '/p0', proto: 'h1', status: 200, bytes: 3, ms: 0, service: null, release: null, instance: null, outcome: 'ok', retries: 0 });
});

test('rotation past max_size keeps `keep` older files; every line lands in one of them', async (t) => {
  const d = await dir(t);
  const file = join(d, 'access.log');
  const log = new AccessLog({ path: file, maxBytes: 4096, keep: 2 }, silentLogger);
  // Written in small batches with the stream flushed between them, as traffic does.
  for (let b = 0; b < 10; b++) {
    for (let i = 0; i < 10; i++) exchange(log, `/b${b}-${i}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
  await log.close();
  assert.ok(existsSync(`${file}.1`) && existsSync(`${file}.2`), 'rotated files');
  assert.equal(existsSync(`${file}.3`), false, 'no more than keep');
  const sizes = [file, `${file}.1`, `${file}.2`].map((f) => readFileSync(f, 'utf8'));
  for (const text of sizes.slice(1)) assert.ok(Buffer.byteLength(text) >= 4096 && Buffer.byteLength(text) < 4096 + 300, 'a rotated file is about max_size');
  const last = sizes[0]!.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l).path);
  assert.equal(last.at(-1), '/b9-9', 'the newest line is in the current file');
  assert.equal(log.stats().dropped, 0);
});

test('a path that cannot be opened is refused, naming proxy.access_log', () => {
  assert.throws(() => new AccessLog({ path: '/nonexistent-dir/access.log', maxBytes: 0, keep: 0 }, silentLogger), (err) => {
    assert.ok(err instanceof BatonError);
    assert.match(err.message, /proxy\.access_log: cannot open \/nonexistent-dir\/access\.log/);
    return true;
  });
});
