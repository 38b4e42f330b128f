// src/proxy/h1/shared-reads.ts on real loopback sockets: an accepted socket's
// handle moved into one read into the shared buffer. It must take on this
// Node (a Node whose handles it no longer knows would silently lose the
// lean path's cheaper reads: this test says so instead), give its reader
// views of the shared buffer, hand node:http-style readers copies after
// release() with backpressure, see the client's end, and leave the server's
// connection count right (its close waits for every connection).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { isSharedView, sharedReads, type SharedReads } from '../../src/proxy/h1/shared-reads.ts';
import { waitUntil } from '../helpers/daemon.ts';
import { withTimeout } from '../helpers/timeouts.ts';

const WAIT_MS = 10_000;

interface Accepted {
  shared: SharedReads;
  accepted: net.Socket;
  views: Buffer[];
  copies: string[];
}

async function serverWithSharedReads(t: { after(fn: () => unknown): void }): Promise<{ server: net.Server; port: number; next: () => Promise<Accepted> }> {
  const waiting: ((a: Accepted) => void)[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (accepted) => {
    const views: Buffer[] = [];
    const copies: string[] = [];
    const shared = sharedReads(accepted, (view) => {
      views.push(view);
      copies.push(view.toString('latin1'));
    });
    assert.ok(shared !== null, "this Node's accepted sockets can be read into the shared buffer");
    shared.socket.on('error', () => undefined);
    waiting.shift()?.({ shared, accepted, views, copies });
  });
  const port = await listening(server, t);
  return { server, port, next: () => new Promise<Accepted>((resolve) => waiting.push(resolve)) };
}

async function connect(port: number, t: { after(fn: () => unknown): void }): Promise<net.Socket> {
  const client = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  client.on('error', () => undefined);
  t.after(() => client.destroy());
  await withTimeout(once(client, 'connect'), WAIT_MS, 'client connect');
  return client;
}

const until = (what: string, cond: () => boolean): Promise<void> => waitUntil(what, cond, WAIT_MS, 5);

async function listening(server: net.Server, t: { after(fn: () => unknown): void }): Promise<number> {
  server.listen(0, '127.0.0.1');
  await withTimeout(once(server, 'listening'), WAIT_MS, 'server listening');
  t.after(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

test('reads reach the reader as views of the shared buffer; the socket writes, sees the end, and its close closes the accepted one', async (t) => {
  const { port, next } = await serverWithSharedReads(t);
  const accepting = next();
  const client = await connect(port, t);
  const { shared, accepted, views, copies } = await withTimeout(accepting, WAIT_MS, 'accept');
  assert.equal((accepted as unknown as { _handle: unknown })._handle, null, 'the handle moved');
  assert.equal(shared.socket.remoteAddress, '127.0.0.1');

  client.write('GET / HTTP/1.1\r\n\r\n');
  await until('the first read', () => copies.join('') === 'GET / HTTP/1.1\r\n\r\n');
  assert.ok(views.every(isSharedView), 'each read is a view of the shared buffer');
  assert.equal(isSharedView(Buffer.from(views[0]!)), false);

  const echoed = once(client, 'data');
  shared.socket.write('pong');
  assert.equal(String((await withTimeout(echoed, WAIT_MS, 'the reply'))[0]), 'pong');

  const ended = once(shared.socket, 'end');
  client.end();
  await withTimeout(ended, WAIT_MS, "the client's end seen by the shared-read socket");
  const acceptedClosed = once(accepted, 'close');
  shared.socket.destroy();
  await withTimeout(acceptedClosed, WAIT_MS, 'the accepted socket closed with the new one');
});

test("after release() reads go to the socket's Readable as copies, with backpressure", async (t) => {
  const { port, next } = await serverWithSharedReads(t);
  const accepting = next();
  const client = await connect(port, t);
  const { shared, copies } = await withTimeout(accepting, WAIT_MS, 'accept');
  client.write('before');
  await until('the first read', () => copies.join('') === 'before');
  shared.release();

  // Nobody reads the Readable yet: it fills to its high-water mark and reading stops (a push() said false),
  // while the client has far more to send than the kernel's buffers hold.
  const chunk = Buffer.alloc(64 * 1024, 'a');
  const sent = 32 * 1024 * 1024;
  for (let n = 0; n < sent; n += chunk.length) client.write(chunk);
  const handle = (shared.socket as unknown as { _handle: { reading: boolean } })._handle;
  await until('the Readable filled and reading stopped', () => shared.socket.readableLength >= shared.socket.readableHighWaterMark && !handle.reading);
  assert.ok(shared.socket.bytesRead < sent, 'reading stopped before the end');
  const got: Buffer[] = [];
  let total = 0;
  shared.socket.on('data', (d: Buffer) => {
    assert.equal(isSharedView(d), false, 'a released read is a copy');
    got.push(d);
    total += d.length;
  });
  await until(`all ${sent} bytes read after resuming`, () => total === sent);
  assert.equal(copies.join(''), 'before', 'the reader saw nothing after release()');
  assert.ok(got.every((d) => d.every((b) => b === 97)));
});

test("the server's close waits for a shared-read connection and completes when it ends", async (t) => {
  const { server, port, next } = await serverWithSharedReads(t);
  const accepting = next();
  const client = await connect(port, t);
  const { shared } = await withTimeout(accepting, WAIT_MS, 'accept');
  let closed = false;
  server.close(() => {
    closed = true;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(closed, false, 'a connection is still open');
  shared.socket.on('end', () => shared.socket.end());
  client.end();
  await until("the server's close", () => closed);
});

test("a socket already read through 'data' (a PROXY header) is taken over inside its listener; one with a reader left is not", async (t) => {
  const adopted: { shared: SharedReads; copies: string[] }[] = [];
  const refused: boolean[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (accepted) => {
    const onData = (chunk: Buffer): void => {
      // While a listener still reads it, the socket is not taken.
      refused.push(sharedReads(accepted, () => undefined) === null);
      accepted.off('data', onData);
      const copies: string[] = [`first:${chunk.toString('latin1')}`];
      const shared = sharedReads(accepted, (view) => copies.push(view.toString('latin1')));
      assert.ok(shared !== null, 'taken over inside its last data listener');
      shared.socket.on('error', () => undefined);
      adopted.push({ shared, copies });
    };
    accepted.on('data', onData);
  });
  const client = await connect(await listening(server, t), t);
  client.write('PROXY header\r\n');
  await until('the take-over', () => adopted.length === 1);
  assert.deepEqual(refused, [true]);
  client.write('GET / HTTP/1.1\r\n\r\n');
  const { shared, copies } = adopted[0]!;
  await until('the read after the take-over', () => copies.slice(1).join('') === 'GET / HTTP/1.1\r\n\r\n');
  assert.equal(copies[0], 'first:PROXY header\r\n');
  const ended = once(shared.socket, 'end');
  client.end();
  await withTimeout(ended, WAIT_MS, "the client's end");
  shared.socket.destroy();
});
