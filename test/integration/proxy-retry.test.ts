import { test } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import net from 'node:net';
import type { TestContext } from 'node:test';
import { request, service, startProxy, startServer, target, UPSTREAM } from '../fixtures/proxy-harness.ts';

/**
 * An upstream that answers GET /warm normally (so the proxy keeps the
 * connection pooled), and for other paths applies `onFlaky` to the connection:
 * it is told how many requests the connection carried before this one.
 */
function flakyHandler(seen: Map<string, number>, onFlaky: (socket: net.Socket, before: number, req: http.IncomingMessage, res: http.ServerResponse) => void): http.RequestListener {
  const perSocket = new WeakMap<object, number>();
  return (req, res) => {
    const before = perSocket.get(req.socket) ?? 0;
    perSocket.set(req.socket, before + 1);
    const key = `${req.method} ${req.url}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    if (req.url === '/warm') {
      req.resume();
      res.end('warm');
      return;
    }
    onFlaky(req.socket, before, req, res);
  };
}

test('a POST whose connection is reset is never sent twice, fresh or reused, one target or two', async (t) => {
  const seen = new Map<string, number>();
  const reset = (socket: net.Socket, _before: number, req: http.IncomingMessage): void => {
    // Read the whole body first, so the request certainly reached the app; then drop the connection.
    req.resume();
    req.on('end', () => socket.resetAndDestroy());
  };
  const a = await startServer(t, flakyHandler(seen, reset));
  const b = await startServer(t, flakyHandler(seen, reset));
  const { proxy, port } = await startProxy(t);

  proxy.apply({ services: [service('s', [target('a', a.port)], { isDefault: true })] });
  // Fresh connection.
  const r1 = await request(port, { method: 'POST', path: '/pay', body: 'x'.repeat(1000) });
  assert.equal(r1.status, 502);
  assert.equal(r1.headers['x-baton-error'], 'upstream_failed');
  // Reused connection.
  assert.equal((await request(port, { path: '/warm' })).status, 200);
  const r2 = await request(port, { method: 'POST', path: '/pay2', body: 'y' });
  assert.equal(r2.status, 502);
  // Two targets: still never sent elsewhere.
  proxy.apply({ services: [service('s', [target('a', a.port), target('b', b.port)], { isDefault: true })] });
  const r3 = await request(port, { method: 'POST', path: '/pay3', body: 'z' });
  assert.equal(r3.status, 502);
  // PATCH without a body, on a reused connection: not idempotent either.
  await request(port, { path: '/warm' });
  await request(port, { path: '/warm' });
  const r4 = await request(port, { method: 'PATCH', path: '/patch' });
  assert.equal(r4.status, 502);

  assert.equal(seen.get('POST /pay'), 1);
  assert.equal(seen.get('POST /pay2'), 1);
  assert.equal(seen.get('POST /pay3'), 1);
  assert.equal(seen.get('PATCH /patch'), 1);
  const c = proxy.counters('s');
  assert.equal(c.retries, 0);
  assert.equal(c.failed, 4);
});

test('a GET on a reused connection that the instance closes is retried once', async (t) => {
  const seen = new Map<string, number>();
  const a = await startServer(
    t,
    flakyHandler(seen, (socket, before, _req, res) => {
      // Like an instance closing an idle keep-alive connection just as the request arrives.
      if (before > 0) socket.destroy();
      else res.end('fresh');
    }),
  );
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('a', a.port)], { isDefault: true })] });

  assert.equal((await request(port, { path: '/warm' })).status, 200);
  const r = await request(port, { path: '/flaky' });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'fresh');
  assert.equal(seen.get('GET /flaky'), 2);
  assert.equal(proxy.counters('s').retries, 1);
  assert.equal(proxy.counters('s').failed, 0);

  // Killed with a reset (ECONNRESET) on a reused connection: same rule.
  const b = await startServer(
    t,
    flakyHandler(seen, (socket, before, _req, res) => {
      if (before > 0) socket.resetAndDestroy();
      else res.end('fresh');
    }),
  );
  proxy.apply({ services: [service('s', [target('b', b.port)], { isDefault: true })] });
  await request(port, { path: '/warm' });
  const r2 = await request(port, { path: '/rst', method: 'DELETE' });
  assert.equal(r2.status, 200);
  assert.equal(seen.get('DELETE /rst'), 2);
  assert.equal(proxy.counters('s').retries, 2);
});

test('only once: a GET that keeps failing is sent at most twice, then 502', async (t) => {
  const seen = new Map<string, number>();
  const a = await startServer(t, flakyHandler(seen, (socket) => socket.destroy()));
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('a', a.port)], { isDefault: true })] });
  await request(port, { path: '/warm' });
  const r = await request(port, { path: '/always' });
  assert.equal(r.status, 502);
  assert.equal(r.headers['x-baton-error'], 'upstream_failed');
  assert.equal(seen.get('GET /always'), 2);
  // Fresh connection: a resend goes to another instance only, and there is none.
  const r2 = await request(port, { path: '/always-fresh' });
  assert.equal(r2.status, 502);
  assert.equal(seen.get('GET /always-fresh'), 1);
  assert.deepEqual(proxy.counters('s'), { requests: 3, failed: 2, appErrors: 0, retries: 1, websockets: 0 });
});

/**
 * An instance that accepts connections and resets each one once it has read a
 * whole request head (like a gunicorn whose master was killed: every
 * connection is fresh, and dies before any response byte). Counts the request
 * lines it read.
 */
async function startResetter(t: TestContext, seen: Map<string, number>): Promise<number> {
  const server = net.createServer((socket) => {
    let head = '';
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const line = head.slice(0, head.indexOf(' HTTP/'));
      seen.set(line, (seen.get(line) ?? 0) + 1);
      socket.resetAndDestroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as net.AddressInfo).port;
}

test('an idempotent request whose fresh connection is reset before any response byte is sent once more, to another instance', async (t) => {
  const seen = new Map<string, number>();
  const resetter = await startResetter(t, seen);
  // A healthy instance that closes every connection, as gunicorn's sync workers do.
  const good = await startServer(t, (req, res) => {
    const key = `good ${req.method} ${req.url}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    req.resume();
    res.setHeader('connection', 'close');
    res.end('good');
  });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('bad', resetter), target('good', good.port)], { isDefault: true, balance: 'round_robin' })] });

  // Round robin: the first request of each pair goes to the resetter, whichever comes first.
  for (let i = 0; i < 4; i++) {
    const r = await request(port, { path: `/get${i}` });
    assert.equal(r.status, 200, `GET /get${i}`);
    assert.equal(r.body, 'good');
    assert.equal(seen.get(`good GET /get${i}`), 1);
  }
  const reset = [0, 1, 2, 3].filter((i) => seen.get(`GET /get${i}`) === 1).length;
  assert.equal(reset, 2, 'two of the four GETs met the resetting instance first');
  const c = proxy.counters('s');
  assert.equal(c.retries, 2);
  assert.equal(c.failed, 0);

  // Never a non-idempotent one: a POST that met the resetter is answered 502, sent once.
  const outcomes: number[] = [];
  for (let i = 0; i < 2; i++) outcomes.push((await request(port, { method: 'POST', path: `/pay${i}`, body: 'x' })).status);
  const postsReset = [0, 1].filter((i) => seen.get(`POST /pay${i}`) === 1);
  assert.equal(postsReset.length, 1, 'one POST met the resetting instance');
  for (const i of postsReset) {
    assert.equal(outcomes[i], 502);
    assert.equal(seen.get(`good POST /pay${i}`), undefined, 'the reset POST was not sent again');
  }
  assert.equal(proxy.counters('s').retries, 2);
});

test('504 when the instance does not answer within responseTimeoutMs; a started response is cut, never truncated silently', async (t) => {
  const timers = new Set<NodeJS.Timeout>();
  t.after(() => timers.forEach(clearTimeout));
  let lateAnswerSent = false;
  const a = await startServer(t, (req, res) => {
    if (req.url === '/slow') {
      timers.add(setTimeout(() => {
        lateAnswerSent = true;
        res.end('late');
      }, 3000));
    } else {
      // Headers and part of a body, then the instance dies.
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
      timers.add(setTimeout(() => req.socket.destroy(), 50));
    }
  });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('a', a.port)], { isDefault: true, upstream: { ...UPSTREAM, responseTimeoutMs: 300 } })] });
  const r = await request(port, { path: '/slow' });
  assert.equal(r.status, 504);
  assert.equal(r.headers['x-baton-error'], 'upstream_timeout');
  assert.equal(lateAnswerSent, false, 'the 504 comes at the response timeout, not when the app answers');

  await assert.rejects(request(port, { path: '/cut' }), (err: Error & { code?: string }) => {
    // The client sees an aborted response, not a short body it could take for complete.
    return err.code === 'ECONNRESET' || /aborted|socket hang up/.test(err.message);
  });
  assert.deepEqual(proxy.counters('s'), { requests: 2, failed: 2, appErrors: 0, retries: 0, websockets: 0 });
});
