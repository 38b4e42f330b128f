// The upstream client against an instance that writes its responses byte for byte
// (src/proxy/upstream/): every framing reaches the client whole, a connection is
// reused only when its response ended exactly, and an ambiguous response is a 502
// on a connection that is then closed.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { request, service, startProxy, startServer, target, withTimeout } from '../fixtures/proxy-harness.ts';

interface RawInstance {
  port: number;
  /** Connections accepted so far. */
  connections(): number;
  /** Request lines received, in order, with the connection (1-based) each came on. */
  requests: { line: string; connection: number }[];
}

/**
 * An instance that reads GET/HEAD heads and answers each with `script(path)`:
 * the pieces written one by one (separate TCP writes), then the connection is
 * closed if the script says so.
 */
async function rawInstance(t: TestContext, script: (path: string) => { pieces: string[]; close?: boolean }): Promise<RawInstance> {
  const requests: RawInstance['requests'] = [];
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    const n = ++accepted;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buf = '';
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const line = buf.slice(0, buf.indexOf('\r\n'));
        buf = buf.slice(end + 4);
        requests.push({ line, connection: n });
        const { pieces, close } = script(line.split(' ')[1]!);
        void (async () => {
          for (const p of pieces) {
            if (socket.destroyed) return;
            socket.write(p, 'latin1');
            // Separate reads at the proxy: wait until this piece left our side.
            await new Promise((resolve) => setImmediate(resolve));
          }
          if (close) socket.end();
        })();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await withTimeout(new Promise((resolve) => server.close(resolve)), 5000, 'the raw instance to close');
  });
  return { port: (server.address() as net.AddressInfo).port, connections: () => accepted, requests };
}

test('chunked (extensions, trailers, split anywhere), Early Hints and bodies read to the close reach the client whole; reuse only after an exact end', async (t) => {
  const body = 'abcdefghij'.repeat(50);
  const inst = await rawInstance(t, (path) => {
    switch (path) {
      case '/chunked':
        return {
          pieces: ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n', '\r\n1f4;name=value\r', `\n${body.slice(0, 200)}`, `${body.slice(200)}\r`, '\n0\r\nX-Checksum: 1\r\n', '\r\n'],
        };
      case '/hints':
        return { pieces: ['HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal'] };
      case '/to-close':
        return { pieces: ['HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n', body.slice(0, 250), body.slice(250)], close: true };
      case '/junk-after':
        return { pieces: ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstolen'] };
      default:
        return { pieces: ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain'] };
    }
  });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('a', inst.port)], { isDefault: true })] });

  const chunked = await request(port, { path: '/chunked' });
  assert.equal(chunked.status, 200);
  assert.equal(chunked.body, body);
  assert.equal(chunked.headers['x-checksum'], undefined, 'trailers are not forwarded');
  assert.equal((await request(port, { path: '/next' })).body, 'plain');
  assert.equal(inst.connections(), 1, 'a chunked response that ended exactly leaves its connection reusable');

  const hints = await request(port, { path: '/hints' });
  assert.equal(hints.status, 200);
  assert.equal(hints.body, 'final');

  const toClose = await request(port, { path: '/to-close' });
  assert.equal(toClose.body, body, 'a body delimited by the close arrives whole');
  assert.equal((await request(port, { path: '/after-close' })).body, 'plain');
  assert.equal(inst.connections(), 2, 'the next request opened a new connection');

  const junk = await request(port, { path: '/junk-after' });
  assert.equal(junk.body, 'ok');
  const after = await request(port, { path: '/after-junk' });
  assert.equal(after.body, 'plain', 'bytes after a response never answer the next request');
  const onJunk = inst.requests.find((r) => r.line.startsWith('GET /junk-after'))!.connection;
  const onAfter = inst.requests.find((r) => r.line.startsWith('GET /after-junk'))!.connection;
  assert.notEqual(onAfter, onJunk, 'the connection that carried bytes after its response was closed');
});

test('an ambiguous response is a 502, and its connection is closed', async (t) => {
  const inst = await rawInstance(t, (path) =>
    path === '/two-lengths'
      ? { pieces: ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 7\r\n\r\nok'] }
      : path === '/bad-chunk'
        ? { pieces: ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n'] }
        : { pieces: ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain'] },
  );
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('a', inst.port)], { isDefault: true })] });
  const two = await request(port, { path: '/two-lengths' });
  assert.equal(two.status, 502);
  assert.equal(two.headers['x-baton-error'], 'upstream_failed');
  assert.equal((await request(port, { path: '/ok' })).body, 'plain');
  // The 502 came before any byte reached the client; a chunked body broken after the head is cut instead.
  await assert.rejects(request(port, { path: '/bad-chunk' }));
  assert.equal((await request(port, { path: '/ok2' })).body, 'plain');
  const conns = new Set(inst.requests.map((r) => r.connection));
  assert.equal(conns.size, 3, 'each malformed response closed its connection');
});

test('request bodies: a declared length is sent as is, a chunked upload is sent chunked, byte for byte', async (t) => {
  const got: { te: string | undefined; cl: string | undefined; body: string }[] = [];
  const app = await startServer(t, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      got.push({ te: req.headers['transfer-encoding'], cl: req.headers['content-length'], body: Buffer.concat(chunks).toString() });
      res.end('done');
    });
  });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('a', app.port)], { isDefault: true })] });
  const big = 'x'.repeat(200_000);
  assert.equal((await request(port, { method: 'POST', path: '/a', body: big })).body, 'done');
  assert.equal((await request(port, { method: 'POST', path: '/b', body: 'chunked body', headers: { 'transfer-encoding': 'chunked' } })).body, 'done');
  assert.equal((await request(port, { method: 'POST', path: '/c' })).body, 'done');
  assert.deepEqual(got, [
    { te: undefined, cl: '200000', body: big },
    { te: 'chunked', cl: undefined, body: 'chunked body' },
    { te: undefined, cl: '0', body: '' },
  ]);
});
