import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import WebSocket from 'ws';
import { service, startApp, startProxy, startServer, target, withTimeout } from '../fixtures/proxy-harness.ts';

/** Bytes received on a socket, with event-driven waits on them. */
class Sink {
  buf = Buffer.alloc(0);
  ended = false;
  #waiters: (() => void)[] = [];
  constructor(socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.#wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this.#wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this.#wake();
    });
  }
  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
  async until(pred: () => boolean, what: string, ms = 5000): Promise<void> {
    await withTimeout(
      (async () => {
        while (!pred()) await new Promise<void>((resolve) => this.#waiters.push(resolve));
      })(),
      ms,
      what,
    );
  }
}

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const accept = (key: string): string => createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');

/** Parse one frame at the start of buf: opcode, masked, payload (unmasked). */
function parseFrame(buf: Buffer): { opcode: number; masked: boolean; payload: Buffer; size: number } {
  const masked = (buf[1]! & 0x80) !== 0;
  const len = buf[1]! & 0x7f; // tests only use short frames
  const start = 2 + (masked ? 4 : 0);
  const payload = Buffer.from(buf.subarray(start, start + len));
  if (masked) for (let i = 0; i < len; i++) payload[i]! ^= buf[2 + (i & 3)]!;
  return { opcode: buf[0]! & 0x0f, masked, payload, size: start + len };
}

test('a WebSocket passes through and is closed by drain() at the deadline with 1001, cleanly', async (t) => {
  const app = await startApp(t, { APP_VERSION: 'v1' });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('a', app.port)], { isDefault: true })] });

  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  t.after(() => ws.terminate());
  const messages: string[] = [];
  const nextMessage = () => withTimeout(new Promise<string>((resolve) => ws.once('message', (d) => resolve(String(d)))), 5000, 'a WebSocket message');
  let msg = nextMessage();
  assert.equal(await msg, 'hello v1');
  msg = nextMessage();
  ws.send('ping 1');
  messages.push(await msg);
  assert.deepEqual(messages, ['ping 1']);
  assert.equal(proxy.targets()[0]!.websockets, 1);
  assert.equal(proxy.counters('s').websockets, 1);

  const closed = withTimeout(
    new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: String(reason) }))),
    5000,
    'the client to see the close',
  );
  proxy.apply({ services: [service('s', [], { isDefault: true })] });
  const result = await proxy.drain('a', 300);
  const close = await closed;
  assert.equal(close.code, 1001);
  assert.equal(close.reason, 'going away');
  assert.equal(result.closedWebSockets, 1);
  assert.equal(result.abandonedRequests, 0);
  // The client saw the close frame (1001 above, not 1006), so nobody had to be destroyed.
  assert.ok(result.durationMs >= 250, `drain took ${result.durationMs} ms, less than its deadline`);
  assert.equal(proxy.targets()[0]!.websockets, 0);
});

test('the close frames are injected at frame boundaries, in both directions', async (t) => {
  // A raw WebSocket server: answers the handshake, then sends half a text frame and waits.
  const frame = Buffer.concat([Buffer.from([0x81, 10]), Buffer.from('helloworld')]);
  let upstream!: net.Socket;
  let upstreamSink!: Sink;
  const upstreamReady = Promise.withResolvers<void>();
  const a = await startServer(t, (_req, res) => res.end());
  a.server.on('upgrade', (req, socket: net.Socket) => {
    upstream = socket;
    upstreamSink = new Sink(socket);
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Accept: ${accept(req.headers['sec-websocket-key']!)}\r\n\r\n`,
    );
    socket.write(frame.subarray(0, 5));
    upstreamReady.resolve();
  });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('a', a.port)], { isDefault: true })] });

  // A raw client, so the test sees every byte.
  const client = net.connect(port, '127.0.0.1');
  t.after(() => client.destroy());
  const sink = new Sink(client);
  client.write(
    `GET /raw HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  await withTimeout(upstreamReady.promise, 5000, 'the upgrade to reach the instance');
  let headEnd = -1;
  await sink.until(() => (headEnd = sink.buf.indexOf('\r\n\r\n')) >= 0 && sink.buf.length >= headEnd + 4 + 5, 'the 101 and half a frame');
  assert.match(sink.buf.toString('latin1', 0, headEnd), /^HTTP\/1\.1 101 /);
  const afterHead = headEnd + 4;

  // The client is mid-frame: the drain deadline passes now.
  const drained = proxy.drain('a', 0);
  // Toward the instance the stream is at a boundary: the masked close arrives at once.
  await upstreamSink.until(() => upstreamSink.buf.length >= 2 && upstreamSink.buf.length >= parseFrame(upstreamSink.buf).size, 'the close frame at the instance');
  const toInstance = parseFrame(upstreamSink.buf);
  assert.equal(toInstance.opcode, 0x8);
  assert.equal(toInstance.masked, true);
  assert.equal(toInstance.payload.readUInt16BE(0), 1001);
  // Nothing but the first half of the frame reached the client so far.
  assert.equal(sink.buf.length, afterHead + 5);

  // The instance completes its frame and answers the close; the client must get the whole frame, then 1001.
  upstream.write(frame.subarray(5));
  // ...and, as a server does after the closing handshake, closes the TCP connection.
  upstream.end(Buffer.from([0x88, 0x02, 0x03, 0xe9]));
  await sink.until(() => sink.buf.length >= afterHead + frame.length + 4, 'the rest of the frame and the close');
  const received = sink.buf.subarray(afterHead);
  assert.deepEqual(received.subarray(0, frame.length), frame);
  const toClient = parseFrame(received.subarray(frame.length));
  assert.equal(toClient.opcode, 0x8);
  assert.equal(toClient.masked, false);
  assert.equal(toClient.payload.readUInt16BE(0), 1001);

  // The client answers the close (masked, as clients must); the proxy then ends the connection.
  client.write(Buffer.from([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe9 ^ 2]));
  await sink.until(() => sink.ended, 'the proxy to end the client connection');
  // The instance's close answer was not relayed: exactly one close reached the client.
  assert.equal(received.length, frame.length + 4 + 'going away'.length);
  const result = await withTimeout(drained, 3000, 'drain() to resolve');
  assert.equal(result.closedWebSockets, 1);
  // Both peers completed the handshake (the proxy ended the client connection
  // after the client's close answer, above): nothing waited for the grace period.
});

test('WebSocket upgrades: 503 without instance, retried past a refusing target', async (t) => {
  const app = await startApp(t, { APP_VERSION: 'v7' });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('s', [], { isDefault: true })] });
  const refused = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  const status = await withTimeout(
    new Promise<number>((resolve) => refused.once('unexpected-response', (_req, res) => resolve(res.statusCode!))),
    5000,
    'the refused upgrade',
  );
  refused.on('error', () => undefined); // terminate() reports the aborted handshake as an error
  refused.terminate();
  assert.equal(status, 503);

  const dead = net.createServer();
  await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
  const deadPort = (dead.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => dead.close(() => resolve()));
  proxy.apply({ services: [service('s', [target('dead', deadPort), target('a', app.port)], { isDefault: true, balance: 'round_robin' })] });
  for (let i = 0; i < 2; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    t.after(() => ws.terminate());
    const hello = await withTimeout(new Promise<string>((resolve) => ws.once('message', (d) => resolve(String(d)))), 5000, 'hello');
    assert.equal(hello, 'hello v7');
    ws.close();
    await withTimeout(once(ws, 'close'), 5000, 'close');
  }
  const c = proxy.counters('s');
  assert.equal(c.websockets, 2);
  assert.equal(c.retries, 1);
});

function once(ws: WebSocket, event: 'close'): Promise<void> {
  return new Promise((resolve) => ws.once(event, () => resolve()));
}
