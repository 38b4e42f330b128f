import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { WebSocketServer } from 'ws';
import type { MaintenanceSpec, PauseSpec, ServiceRouteSpec, UpstreamTarget } from '../../src/proxy/index.ts';
import { request, service, startProxy, startServer, target, waitUntil, withTimeout, type SimpleResponse } from '../fixtures/proxy-harness.ts';

const PAGE = '<!doctype html><html><body><h1>Back soon</h1></body></html>';

function spec(targets: UpstreamTarget[], extra: Partial<ServiceRouteSpec> = {}): { services: ServiceRouteSpec[] } {
  return { services: [service('web', targets, { isDefault: true, ...extra })] };
}

/** An upstream that records the order of arrival (the path) and answers it back. */
async function recorder(t: TestContext): Promise<{ target: UpstreamTarget; seen: string[] }> {
  const seen: string[] = [];
  const s = await startServer(t, (req, res) => {
    seen.push(req.url!);
    req.resume();
    res.end(`app ${req.url}`);
  });
  return { target: target('a1', s.port), seen };
}

/** Raw WebSocket handshake; resolves with everything received until `until` matches. */
function rawUpgrade(port: number, until: RegExp, localAddress?: string): Promise<string> {
  return withTimeout(
    new Promise<string>((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1', localAddress });
      let got = '';
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (until.test(got)) {
          s.destroy();
          resolve(got);
        }
      });
      s.on('close', () => resolve(got));
      s.on('error', reject);
      s.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    }),
    10_000,
    'the upgrade answer',
  );
}

test('maintenance: 503 page with Retry-After for everyone outside the allow-list; allowed clients reach the app; upgrades too', async (t) => {
  const { target: a } = await recorder(t);
  const { proxy, port } = await startProxy(t);
  const maintenance: MaintenanceSpec = { html: PAGE, retryAfterSeconds: 120, allow: ['127.0.0.2', '2001:db8::/32'] };
  proxy.apply(spec([a], { maintenance }));

  const other = await request(port, { path: '/x', localAddress: '127.0.0.1' });
  assert.equal(other.status, 503);
  assert.equal(other.body, PAGE);
  assert.equal(other.headers['retry-after'], '120');
  assert.equal(other.headers['cache-control'], 'no-store');
  assert.match(other.headers['content-type']!, /^text\/html/);
  const head = await request(port, { method: 'HEAD', localAddress: '127.0.0.1' });
  assert.equal(head.status, 503);
  assert.equal(head.body, '');

  const allowed = await request(port, { path: '/x', localAddress: '127.0.0.2' });
  assert.equal(allowed.status, 200);
  assert.equal(allowed.body, 'app /x');

  const ws = await rawUpgrade(port, /Back soon/, '127.0.0.1');
  assert.match(ws, /^HTTP\/1\.1 503 [^]*retry-after: 120\r\n[^]*connection: close\r\n\r\n<!doctype html>/);

  const rc = proxy.routingCounters('web');
  assert.equal(rc.maintenance, 3);
  // The maintenance page is an answer on purpose: not one of baton's failures, nor an app error.
  assert.deepEqual(proxy.counters('web'), { requests: 3, failed: 0, appErrors: 0, retries: 0, websockets: 0 });
  const noRelease = proxy.releaseMetrics('web').find((m) => m.release === '-')!;
  assert.equal(noRelease.status['5xx'], 3);
  assert.equal(noRelease.failed, 0);
  assert.equal(noRelease.appErrors, 0);

  // Off again: everyone reaches the app.
  proxy.apply(spec([a]));
  assert.equal((await request(port, { localAddress: '127.0.0.1' })).status, 200);
});

test('pause: 20 requests held, then released in order through the new snapshot; one more is refused at once', async (t) => {
  const { target: a, seen } = await recorder(t);
  const { proxy, port } = await startProxy(t);
  const pause: PauseSpec = { maxQueued: 20, maxWaitMs: 20_000 };
  proxy.apply(spec([a], { pause }));
  const pending: Promise<SimpleResponse>[] = [];
  for (let i = 0; i < 20; i++) {
    pending.push(request(port, { path: `/r${i}`, method: i % 2 ? 'POST' : 'GET', body: i % 2 ? `body ${i}` : undefined }));
    await waitUntil(() => proxy.routingCounters('web').heldNow === i + 1, 5000, `request ${i} to be held`);
  }
  const overflow = await request(port, { path: '/over' });
  assert.equal(overflow.status, 503);
  assert.equal(overflow.headers['retry-after'], '1');
  assert.equal(overflow.headers['x-baton-error'], 'paused');
  assert.equal(seen.length, 0);

  // The pause ends with a new target: the held requests go there, oldest first.
  const { target: b, seen: seenB } = await recorder(t);
  proxy.apply(spec([{ ...b, id: 'b1' }]));
  const results = await Promise.all(pending);
  assert.deepEqual(
    results.map((r) => [r.status, r.body]),
    Array.from({ length: 20 }, (_, i) => [200, `app /r${i}`]),
  );
  assert.deepEqual(seenB, Array.from({ length: 20 }, (_, i) => `/r${i}`));
  assert.equal(seen.length, 0);
  const rc = proxy.routingCounters('web');
  assert.deepEqual([rc.held, rc.released, rc.overflowed, rc.expired, rc.heldNow], [20, 20, 1, 0, 0]);
  assert.deepEqual(proxy.counters('web'), { requests: 21, failed: 1, appErrors: 0, retries: 0, websockets: 0 });
});

test('pause: a held request expires with 503 after maxWaitMs; a client that leaves is dropped from the queue', async (t) => {
  const { target: a, seen } = await recorder(t);
  const { proxy, port } = await startProxy(t);
  proxy.apply(spec([a], { pause: { maxQueued: 5, maxWaitMs: 300 } }));
  const started = performance.now();
  const r = await request(port, { path: '/late' });
  const waited = performance.now() - started;
  assert.equal(r.status, 503);
  assert.equal(r.headers['x-baton-error'], 'paused');
  assert.equal(r.headers['retry-after'], '1');
  assert.ok(waited >= 250, `answered after ${waited.toFixed(0)} ms, before maxWaitMs`);
  assert.equal(proxy.routingCounters('web').expired, 1);

  proxy.apply(spec([a], { pause: { maxQueued: 5, maxWaitMs: 20_000 } }));
  const req = http.request({ host: '127.0.0.1', port, path: '/gone', agent: false });
  req.on('error', () => undefined);
  req.end();
  await waitUntil(() => proxy.routingCounters('web').heldNow === 1, 5000, 'the request to be held');
  req.destroy();
  await waitUntil(() => proxy.routingCounters('web').heldNow === 0, 5000, 'the request to leave the queue');
  assert.equal(proxy.routingCounters('web').abandoned, 1);
  proxy.apply(spec([a]));
  assert.equal((await request(port, { path: '/after' })).status, 200);
  assert.deepEqual(seen, ['/after']);
});

test('pause: a WebSocket upgrade is held and released; close() answers what is still held with 503', async (t) => {
  const s = await startServer(t, (_req, res) => res.end('app'));
  const wss = new WebSocketServer({ server: s.server });
  wss.on('connection', (ws) => ws.send('hello'));
  t.after(() => wss.close());
  const { proxy, port } = await startProxy(t);
  proxy.apply(spec([target('a1', s.port)], { pause: { maxQueued: 5, maxWaitMs: 20_000 } }));
  const upgraded = rawUpgrade(port, /hello/);
  await waitUntil(() => proxy.routingCounters('web').heldNow === 1, 5000, 'the upgrade to be held');
  proxy.apply(spec([target('a1', s.port)]));
  assert.match(await upgraded, /^HTTP\/1\.1 101 [^]*hello/);
  assert.equal(proxy.counters('web').websockets, 1);

  proxy.apply(spec([target('a1', s.port)], { pause: { maxQueued: 5, maxWaitMs: 20_000 } }));
  const held = request(port, { path: '/held' });
  const heldWs = rawUpgrade(port, /\r\n\r\n[^]*\n$/);
  await waitUntil(() => proxy.routingCounters('web').heldNow === 2, 5000, 'two held');
  await withTimeout(proxy.close(), 8000, 'close()');
  assert.equal((await held).status, 503);
  assert.match(await heldWs, /^HTTP\/1\.1 503 /);
});

test('/_baton/health answers 200 ok in maintenance, pause and without services; 503 draining after setHostHealth(false)', async (t) => {
  const { target: a, seen } = await recorder(t);
  const { proxy, port } = await startProxy(t);
  const health = (method = 'GET'): Promise<SimpleResponse> => request(port, { path: '/_baton/health', method });
  let r = await health();
  assert.deepEqual([r.status, r.body, r.headers['content-type'], r.headers['cache-control']], [200, 'ok', 'text/plain; charset=utf-8', 'no-store']);
  proxy.apply(spec([a], { maintenance: { html: PAGE, retryAfterSeconds: 5, allow: [] } }));
  assert.equal((await health()).body, 'ok');
  proxy.apply(spec([], { pause: { maxQueued: 0, maxWaitMs: 1000 } }));
  assert.equal((await health()).body, 'ok');
  assert.equal((await request(port, { path: '/_baton/health?probe=1' })).body, 'ok');
  assert.equal((await health('HEAD')).status, 200);
  assert.equal((await health('POST')).status, 405);

  proxy.setHostHealth(false);
  r = await health();
  assert.deepEqual([r.status, r.body], [503, 'draining']);
  assert.equal(proxy.hostHealthy, false);
  proxy.setHostHealth(true);
  assert.equal((await health()).status, 200);

  // Other /_baton/ paths and look-alikes belong to the app.
  proxy.apply(spec([a]));
  assert.equal((await request(port, { path: '/_baton/other' })).body, 'app /_baton/other');
  assert.equal((await request(port, { path: '/_baton/healthz' })).body, 'app /_baton/healthz');
  assert.deepEqual(seen, ['/_baton/other', '/_baton/healthz']);
  assert.equal(proxy.counters('web').requests, 2); // health checks are not the service's traffic
});
