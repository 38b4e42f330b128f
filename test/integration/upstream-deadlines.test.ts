// The upstream pool's deadlines (connect, response head) after a stall of the
// event loop: what the kernel completed during the stall is read before a
// deadline is declared passed. The stall is made here with a busy loop, the way
// a long collection or a starved CPU makes one in production.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { UpstreamPool, type UpstreamController, type UpstreamHandler } from '../../src/proxy/upstream/pool.ts';
import { withTimeout } from '../fixtures/proxy-harness.ts';

const ANSWER = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';

/** Hold the event loop until `done()` (bounded: `what` is named if it never comes) and at least `minMs`. */
function stall(minMs: number, done: () => boolean = () => true, what = ''): void {
  const start = performance.now();
  for (;;) {
    const elapsed = performance.now() - start;
    if (elapsed >= minMs && done()) return;
    if (elapsed > 30_000) throw new Error(`gave up stalling after 30 s: ${what}`);
  }
}

/** Dispatch a GET; resolves with the status, or rejects with the attempt's error. */
function get(pool: UpstreamPool): Promise<number> {
  return new Promise((resolve, reject) => {
    let status = 0;
    const handler: UpstreamHandler = {
      onRequestStart() {},
      onResponseStarted() {},
      onResponseStart(_c: UpstreamController, s: number) {
        status = s;
      },
      onResponseData() {},
      onResponseEnd() {
        resolve(status);
      },
      onResponseError(_c, err) {
        reject(err);
      },
    };
    pool.dispatch({ method: 'GET', path: '/', headers: ['host', 'a.test'], body: null }, handler);
  });
}

test('a connection the kernel completed during a stall longer than connect_timeout is used, not timed out', async (t) => {
  const server = net.createServer((s) => s.on('data', () => s.write(ANSWER)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as net.AddressInfo).port;
  const pool = new UpstreamPool('127.0.0.1', port, { connectTimeoutMs: 100, responseTimeoutMs: 10_000, keepAliveTimeoutMs: 10_000 });
  t.after(() => pool.close());
  const answer = get(pool);
  // The loopback handshake completes in the kernel while this process does nothing else.
  stall(400);
  assert.equal(await withTimeout(answer, 10_000, 'the answer after the stall'), 200);
});

test('a response head that arrived during a stall longer than response_timeout is read, not timed out', async (t) => {
  // The instance is another process, so that it answers while this one stalls; it
  // leaves a file once it has written each answer.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'baton-deadline-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const script = `
    const fs = require('node:fs');
    let n = 0;
    require('node:net').createServer((s) => s.on('data', () => s.write(${JSON.stringify(ANSWER)}, () => fs.writeFileSync(${JSON.stringify(dir)} + '/answered-' + ++n, ''))))
      .listen(0, '127.0.0.1', function () { console.log(this.address().port); });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  t.after(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  });
  const port = await withTimeout(
    new Promise<number>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())))),
    10_000,
    'the instance process to listen',
  );
  const pool = new UpstreamPool('127.0.0.1', port, { connectTimeoutMs: 10_000, responseTimeoutMs: 100, keepAliveTimeoutMs: 10_000 });
  t.after(() => pool.close());
  // A first request opens the connection; the second goes on it, written at once.
  assert.equal(await withTimeout(get(pool), 10_000, 'the first answer'), 200);
  const answer = get(pool);
  stall(400, () => existsSync(path.join(dir, 'answered-2')), 'the instance to answer the second request');
  assert.equal(await withTimeout(answer, 10_000, 'the answer after the stall'), 200);
});
