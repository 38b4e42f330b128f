// baton's own HTTP/1.1 path (src/proxy/h1/) on a real proxy: plain requests
// served by it, anything else handed to node:http between two responses, the
// response framings it writes, its timeouts and how it closes. Which path
// answered shows in the head: the lean path writes lowercase "connection:",
// node:http "Connection:".

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { rawExchange, service, startProxy, startServer, target, waitUntil, withTimeout } from '../fixtures/proxy-harness.ts';
import { Proxy } from '../../src/proxy/index.ts';
import { silentLogger } from '../../src/core/log.ts';

/** Echoes method, URL and body. */
const echo: http.RequestListener = (req, res) => {
  let body = '';
  req.setEncoding('latin1');
  req.on('data', (d: string) => (body += d));
  req.on('end', () => res.end(`${req.method} ${req.url} ${body}|`));
};

/** The responses in `raw`, in order: status, head text, body (Content-Length or chunked; none for the `headAt` indexes: HEAD requests). */
function responses(raw: string, headAt: readonly number[] = []): { status: number; head: string; body: string }[] {
  const out: { status: number; head: string; body: string }[] = [];
  let at = 0;
  while (at < raw.length) {
    const end = raw.indexOf('\r\n\r\n', at);
    assert.ok(end > 0, `a response head at ${at}: ${JSON.stringify(raw.slice(at, at + 80))}`);
    const head = raw.slice(at, end + 2);
    at = end + 4;
    const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
    assert.ok(m !== null, `a status line: ${JSON.stringify(raw)}`);
    const status = Number(m[1]);
    const length = /\r\ncontent-length: (\d+)/i.exec(head);
    let body = '';
    if (headAt.includes(out.length)) {
      // A HEAD response: no body whatever its fields say.
    } else if (length !== null) {
      body = raw.slice(at, at + Number(length[1]));
      at += body.length;
    } else if (/\r\ntransfer-encoding: chunked/i.test(head)) {
      for (;;) {
        const line = raw.indexOf('\r\n', at);
        const size = parseInt(raw.slice(at, line), 16);
        at = line + 2;
        if (size === 0) {
          at += 2;
          break;
        }
        body += raw.slice(at, at + size);
        at += size + 2;
      }
    }
    out.push({ status, head, body });
  }
  return out;
}

test('pipelined requests: plain ones on the lean path, the first with a chunked body hands the connection to node:http, answers in order', async (t) => {
  const app = await startServer(t, echo);
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('a', [target('a1', app.port)], { isDefault: true })] });
  const raw = await rawExchange(
    port,
    'GET /1 HTTP/1.1\r\nHost: a\r\n\r\n' +
      'HEAD /2 HTTP/1.1\r\nHost: a\r\n\r\n' +
      'POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' +
      'GET /4 HTTP/1.1\r\nHost: a\r\n\r\n' +
      'GET /5 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
  );
  const rs = responses(raw, [1]);
  assert.deepEqual(
    rs.map((r) => r.status),
    [200, 200, 200, 200, 200],
  );
  assert.deepEqual(
    rs.map((r) => r.body),
    ['GET /1 |', '', 'POST /3 hello|', 'GET /4 |', 'GET /5 |'],
  );
  // Lean until the chunked body; node:http from there on, for the connection's life.
  assert.match(rs[0]!.head, /\r\nconnection: keep-alive\r\n/);
  assert.match(rs[1]!.head, /\r\nconnection: keep-alive\r\n/);
  assert.match(rs[2]!.head, /\r\nConnection: keep-alive\r\n/);
  assert.match(rs[4]!.head, /\r\nConnection: close\r\n/);
  assert.equal(proxy.counters('a').requests, 5);
  assert.equal(proxy.counters('a').failed, 0);
});

test('bodies of one Content-Length stay on the lean path: pipelined, split at every byte, empty; the next request starts right after', async (t) => {
  const app = await startServer(t, echo);
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('a', [target('a1', app.port)], { isDefault: true })] });
  const text =
    'POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello' +
    'PUT /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nGET / HTTP/' +
    'POST /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n' +
    'PATCH /4 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc';
  // All at once, then one byte per write (every split of head and body).
  for (const byteByByte of [false, true]) {
    const rs = responses(await rawExchange(port, text, { byteByByte }));
    assert.deepEqual(
      rs.map((r) => r.body),
      ['POST /1 hello|', 'PUT /2 GET / HTTP/|', 'POST /3 |', 'PATCH /4 abc|'],
    );
    for (const r of rs.slice(0, 3)) assert.match(r.head, /\r\nconnection: keep-alive\r\n/, 'answered by the lean path');
    assert.match(rs[3]!.head, /\r\nconnection: close\r\n/);
  }
  assert.equal(proxy.counters('a').failed, 0);
});

test('a large body on the lean path reaches a slow instance whole', async (t) => {
  const size = 8 * 1024 * 1024;
  let received = 0;
  const app = await startServer(t, (req, res) => {
    const hash = createHash('sha256');
    // Read slowly: the proxy must stop reading the client, not hold the body.
    req.on('data', (d: Buffer) => {
      hash.update(d);
      received += d.length;
      req.pause();
      setImmediate(() => req.resume());
    });
    req.on('end', () => res.end(hash.digest('hex')));
  });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('a', [target('a1', app.port)], { isDefault: true })] });
  const body = Buffer.alloc(size);
  for (let i = 0; i < size; i++) body[i] = (i * 7919) & 0xff;
  const sent = createHash('sha256').update(body).digest('hex');
  const res = await withTimeout(
    new Promise<{ head: string; body: string }>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.on('close', () => {
        const end = got.indexOf('\r\n\r\n');
        resolve({ head: got.slice(0, end), body: got.slice(end + 4) });
      });
      s.on('error', reject);
      s.write(`POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: ${size}\r\nConnection: close\r\n\r\n`);
      s.write(body);
    }),
    30_000,
    'the answer to the large body',
  );
  assert.equal(received, size);
  assert.match(res.head, /\r\nconnection: close/);
  assert.equal(res.body, sent);
});

test('an answer before the body arrived whole closes the connection after it, and the client reads it whole (no reset)', async (t) => {
  // The instance answers without reading the body: the proxy stops reading the client, whose
  // unread bytes then wait in the proxy's socket. Closed with them unread, the connection would
  // be reset, and a reset can destroy the answer before the client reads it.
  let answer: (() => void) | null = null;
  const app = await startServer(t, (_req, res) => {
    answer = () => res.end('early');
  });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('a', [target('a1', app.port)], { isDefault: true })] });
  const s = net.connect(port, '127.0.0.1');
  t.after(() => s.destroy());
  let got = '';
  let error: Error | null = null;
  let closed = false;
  s.on('data', (d: Buffer) => (got += d.toString('latin1')));
  s.on('error', (err) => (error = err));
  s.on('close', () => (closed = true));
  s.write('POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n');
  await waitUntil(() => answer !== null, 10_000, 'the request to reach the instance');
  // Fill every buffer on the way until the client's own writes wait.
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  let sent = 0;
  while (s.write(chunk)) {
    sent += chunk.length;
    assert.ok(sent < 100_000_000, 'the proxy read the whole body: it did not hold the client back');
    await new Promise((r) => setImmediate(r));
  }
  answer!();
  await waitUntil(() => closed, 10_000, 'the connection to close after the answer');
  assert.equal(error, null, `the client saw ${String(error)}`);
  const rs = responses(got);
  assert.equal(rs.length, 1);
  assert.equal(rs[0]!.body, 'early');
  assert.match(rs[0]!.head, /\r\nconnection: close\r\n/);
});

test('a body over the service\'s limit goes to node:http\'s 413; a client gone mid-body abandons the request', async (t) => {
  let arrived = 0;
  let abandoned = false;
  const app = await startServer(t, (req, res) => {
    arrived++;
    req.on('aborted', () => (abandoned = true));
    req.on('error', () => (abandoned = true));
    req.resume();
    req.on('end', () => res.end('whole'));
  });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('a', [target('a1', app.port)], { isDefault: true, limits: { maxBodyBytes: 10, maxInflight: null, maxQueued: 0, queueTimeoutMs: 1000 } })] });
  const over = responses(await rawExchange(port, 'POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world'));
  assert.equal(over[0]!.status, 413);
  assert.equal(arrived, 0, 'the instance saw nothing of it');
  const s = net.connect(port, '127.0.0.1');
  t.after(() => s.destroy());
  s.on('error', () => undefined);
  s.write('POST /cut HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhalf');
  await waitUntil(() => arrived === 1, 10_000, 'the request to reach the instance');
  s.destroy();
  await waitUntil(() => abandoned, 10_000, 'the instance to see the body cut');
  await waitUntil(() => proxy.counters('a').requests === 2, 10_000, 'the exchange to be counted');
});

test('a request after one that asked for Connection: close is not answered (the connection ends after that response)', async (t) => {
  const app = await startServer(t, echo);
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('a', [target('a1', app.port)], { isDefault: true })] });
  const rs = responses(await rawExchange(port, 'GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n'));
  assert.deepEqual(
    rs.map((r) => r.body),
    ['GET /a |'],
  );
  assert.equal(proxy.counters('a').requests, 1);
});

test('a whole connection of plain requests stays lean and closes when asked', async (t) => {
  const app = await startServer(t, echo);
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('a', [target('a1', app.port)], { isDefault: true })] });
  const raw = await rawExchange(port, 'GET /a HTTP/1.1\r\nHost: a\r\n\r\nDELETE /b HTTP/1.1\r\nHost: a\r\n\r\nOPTIONS /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  const rs = responses(raw);
  assert.deepEqual(
    rs.map((r) => r.body),
    ['GET /a |', 'DELETE /b |', 'OPTIONS /c |'],
  );
  assert.match(rs[2]!.head, /\r\nconnection: close\r\n/);
  assert.match(rs[0]!.head, /\r\nkeep-alive: timeout=5\r\n/);
  // The instance's own lines pass as they came (Node's server writes "Date"), its hop-by-hop ones do not.
  assert.match(rs[0]!.head, /\r\nDate: /);
  assert.doesNotMatch(rs[0]!.head, /\r\nConnection: /);
});

/** An instance that answers each path with the raw response given. */
async function rawInstance(t: test.TestContext, answers: Record<string, string>): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const path = buf.slice(0, end).split(' ')[1]!;
        buf = buf.slice(end + 4);
        s.write(answers[path] ?? 'HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as net.AddressInfo).port;
}

test('framing written by the lean path: length kept, chunked for unknown lengths, none for HEAD, 204 and 304, a length beside Transfer-Encoding dropped', async (t) => {
  const port0 = await rawInstance(t, {
    '/len': 'HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-a: 1\r\nx-a: 2\r\n\r\nabc',
    '/chunked': 'HTTP/1.1 201 Made\r\ntransfer-encoding: chunked\r\nconnection: keep-alive, x-hop\r\nx-hop: no\r\n\r\n2\r\nab\r\n3;ext=1\r\ncde\r\n0\r\nx-trailer: t\r\n\r\n',
    '/both': 'HTTP/1.1 200 OK\r\ncontent-length: 99\r\ntransfer-encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n',
    '/204': 'HTTP/1.1 204 No Content\r\nx-b: 1\r\n\r\n',
    '/304': 'HTTP/1.1 304 Not Modified\r\netag: "e"\r\n\r\n',
    '/head': 'HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n',
  });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('a', [target('a1', port0)], { isDefault: true })] });
  const get = (p: string, m = 'GET') => `${m} ${p} HTTP/1.1\r\nHost: a\r\n\r\n`;
  const raw = await rawExchange(port, get('/len') + get('/chunked') + get('/both') + get('/204') + get('/304') + get('/head', 'HEAD') + 'GET /len HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  const rs = responses(raw, [5]);
  assert.equal(rs.length, 7, JSON.stringify(raw));
  assert.equal(rs[0]!.body, 'abc');
  assert.match(rs[0]!.head, /\r\nx-a: 1\r\nx-a: 2\r\n/);
  assert.match(rs[1]!.head, /^HTTP\/1\.1 201 Made\r\n/);
  assert.match(rs[1]!.head, /\r\ntransfer-encoding: chunked/);
  assert.doesNotMatch(rs[1]!.head, /x-hop/);
  assert.equal(rs[1]!.body, 'abcde');
  assert.doesNotMatch(rs[2]!.head, /content-length/i);
  assert.equal(rs[2]!.body, 'wxyz');
  for (const r of [rs[3]!, rs[4]!, rs[5]!]) assert.doesNotMatch(r.head, /transfer-encoding/i);
  assert.equal(rs[3]!.status, 204);
  assert.equal(rs[4]!.status, 304);
  assert.match(rs[5]!.head, /\r\ncontent-length: 10\r\n/);
  assert.equal(rs[6]!.body, 'abc');
});

test('timeouts: a connection that sends nothing gets 408, an idle one is closed, a head in pieces is answered', async (t) => {
  const app = await startServer(t, echo);
  const { proxy, port } = await startProxy(t, { headersTimeoutMs: 300, clientIdleTimeoutMs: 300 });
  proxy.apply({ services: [service('a', [target('a1', app.port)], { isDefault: true })] });
  const silent = await rawExchange(port, '');
  assert.match(silent, /^HTTP\/1\.1 408 /);

  const idle = await rawExchange(port, 'GET /idle HTTP/1.1\r\nHost: a\r\n\r\n');
  const rs = responses(idle);
  assert.deepEqual(
    rs.map((r) => r.body),
    ['GET /idle |'],
  );

  const pieces = await withTimeout(
    new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.endsWith('|')) s.end();
      });
      s.on('close', () => resolve(got));
      s.on('error', reject);
      s.write('GET /pieces HTTP/1.1\r\nHo', () => s.write('st: a\r\n\r\n'));
    }),
    10_000,
    'a head sent in two writes to be answered',
  );
  assert.equal(responses(pieces)[0]!.body, 'GET /pieces |');
});

test('closing: an idle lean connection is closed at once, a response under way ends with Connection: close', async (t) => {
  let release: (() => void) | null = null;
  const app = await startServer(t, (req, res) => {
    if (req.url === '/held') release = () => res.end('held done');
    else res.end('quick');
  });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('a', [target('a1', app.port)], { isDefault: true })] });
  const open = (path: string) => {
    const s = net.connect(port, '127.0.0.1');
    const st = { got: '', closed: false, socket: s };
    s.on('data', (d: Buffer) => (st.got += d.toString('latin1')));
    s.on('close', () => (st.closed = true));
    s.on('error', () => undefined);
    s.write(`GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`);
    return st;
  };
  const idle = open('/quick');
  await waitUntil(() => idle.got.endsWith('quick'), 10_000, 'the first response');
  const busy = open('/held');
  await waitUntil(() => release !== null, 10_000, 'the held request to reach the instance');
  const closed = proxy.close();
  await waitUntil(() => idle.closed, 10_000, 'the idle connection to close');
  assert.equal(busy.closed, false);
  release!();
  await waitUntil(() => busy.closed, 10_000, 'the busy connection to close after its response');
  const [r] = responses(busy.got);
  assert.equal(r!.body, 'held done');
  assert.match(r!.head, /\r\nconnection: close\r\n/);
  await withTimeout(closed, 10_000, 'proxy.close()');
});

test('a client that ends its side while its request is under way has gone: the instance sees the request abandoned', async (t) => {
  let abandoned = false;
  let arrived = false;
  const app = await startServer(t, (req, res) => {
    arrived = true;
    res.on('close', () => (abandoned = !res.writableFinished));
  });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('a', [target('a1', app.port)], { isDefault: true })] });
  const s = net.connect(port, '127.0.0.1');
  t.after(() => s.destroy());
  s.on('error', () => undefined);
  s.write('GET /held HTTP/1.1\r\nHost: a\r\n\r\n');
  await waitUntil(() => arrived, 10_000, 'the request to reach the instance');
  s.end();
  await waitUntil(() => abandoned, 10_000, 'the instance to see its request abandoned');
  await waitUntil(() => proxy.counters('a').requests === 1, 10_000, 'the exchange to be counted');
  assert.equal(proxy.counters('a').failed, 0);
});

test('a response head reaches the client before its body when the instance sends the body later', async (t) => {
  let sendBody: (() => void) | null = null;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.once('data', () => {
      s.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n');
      sendBody = () => s.end('hello');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('a', [target('a1', (server.address() as net.AddressInfo).port)], { isDefault: true })] });
  const s = net.connect(port, '127.0.0.1');
  t.after(() => s.destroy());
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString('latin1')));
  s.write('GET /later HTTP/1.1\r\nHost: a\r\n\r\n');
  await waitUntil(() => got.includes('\r\n\r\n'), 10_000, 'the head before the body');
  assert.equal(got.slice(got.indexOf('\r\n\r\n') + 4), '');
  sendBody!();
  await waitUntil(() => got.endsWith('hello'), 10_000, 'the body');
  assert.match(got, /^HTTP\/1\.1 200 OK\r\ncontent-length: 5\r\n/);
});

test('proxy.http1_fast_path false (leanHttp1): node:http serves every request', async (t) => {
  const app = await startServer(t, echo);
  const proxy = new Proxy({ logger: silentLogger, clientIdleTimeoutMs: 5000, headersTimeoutMs: 5000, closeTimeoutMs: 3000, leanHttp1: false });
  const [addr] = await proxy.listen([{ host: '127.0.0.1', port: 0 }]);
  t.after(() => withTimeout(proxy.close(), 8000, 'proxy.close()'));
  proxy.apply({ services: [service('a', [target('a1', app.port)], { isDefault: true })] });
  const rs = responses(await rawExchange(addr!.port, 'GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'));
  assert.deepEqual(
    rs.map((r) => r.body),
    ['GET /a |', 'GET /b |'],
  );
  assert.match(rs[0]!.head, /\r\nConnection: keep-alive\r\n/);
});
