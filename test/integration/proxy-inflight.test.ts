// A service's cap on requests in flight (limits.max_inflight) with its short
// queue: exactly the expected number served, queued and shed under concurrent
// load, Retry-After on every 503, shedding counted as its own outcome, and
// another service's traffic untouched. The capped instance holds requests
// behind a gate the test opens: no sleeps, no wall-clock bounds.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import http from 'node:http';
import net from 'node:net';
import { Proxy } from '../../src/proxy/index.ts';
import type { ServiceLimits } from '../../src/config/types.ts';
import { silentLogger } from '../../src/core/log.ts';
import { parsePrometheus, promValue, request, service, startServer, target, waitUntil, withTimeout, type SimpleResponse } from '../fixtures/proxy-harness.ts';
import { startLoad } from '../helpers/load.ts';

/** An instance that holds every request until the gate opens, and counts them. */
async function gatedInstance(t: TestContext): Promise<{ port: number; arrived: () => number; open: () => void }> {
  const held: ServerResponse[] = [];
  let arrived = 0;
  let opened = false;
  const up = await startServer(t, (_req, res) => {
    arrived++;
    if (opened) res.end('done');
    else held.push(res);
  });
  return {
    port: up.port,
    arrived: () => arrived,
    open: () => {
      opened = true;
      for (const res of held.splice(0)) res.end('done');
    },
  };
}

function limits(l: Partial<ServiceLimits>): ServiceLimits {
  return { maxBodyBytes: null, maxInflight: null, maxQueued: 100, queueTimeoutMs: 30_000, ...l };
}

async function cappedProxy(t: TestContext, cap: Partial<ServiceLimits>): Promise<{ proxy: Proxy; port: number; gated: Awaited<ReturnType<typeof gatedInstance>>; otherSeen: () => number }> {
  const gated = await gatedInstance(t);
  let otherSeen = 0;
  const other = await startServer(t, (_req, res) => {
    otherSeen++;
    res.end('other');
  });
  const proxy = new Proxy({ logger: silentLogger, clientIdleTimeoutMs: 5000, headersTimeoutMs: 5000, closeTimeoutMs: 3000 });
  const [addr] = await proxy.listen([{ host: '127.0.0.1', port: 0 }]);
  t.after(() => withTimeout(proxy.close(), 8000, 'proxy.close()'));
  proxy.apply({
    services: [
      service('capped', [target('c', gated.port)], { hosts: ['capped.test'], limits: limits(cap) }),
      service('other', [target('o', other.port)], { isDefault: true }),
    ],
  });
  return { proxy, port: addr!.port, gated, otherSeen: () => otherSeen };
}

test('over max_inflight: exactly the cap served, the queue waits, the rest shed with 503 + Retry-After; another service is unaffected', async (t) => {
  const { proxy, port, gated, otherSeen } = await cappedProxy(t, { maxInflight: 3, maxQueued: 2 });
  // Normal traffic on the other service all along.
  const load = startLoad({ url: `http://127.0.0.1:${port}/`, concurrency: 4, maxRequests: 300 });
  const answers: Promise<SimpleResponse>[] = [];
  for (let i = 0; i < 8; i++) answers.push(request(port, { path: `/r${i}`, headers: { host: 'capped.test', accept: 'text/plain' } }));
  // Admission is decided on arrival: the first 3 go on, the next 2 wait, the last 3 are shed.
  await waitUntil(() => gated.arrived() === 3 && proxy.routingCounters('capped').queuedNow === 2 && proxy.routingCounters('capped').shed === 3, 10_000, '3 in flight, 2 queued, 3 shed');
  const prom = parsePrometheus(proxy.prometheusText());
  assert.equal(promValue(prom.samples, 'baton_queued_requests', { service: 'capped' }), 2);
  assert.equal(promValue(prom.samples, 'baton_shed_requests_total', { service: 'capped', reason: 'queue_full' }), 3);
  assert.equal(promValue(prom.samples, 'baton_shed_requests_total', { service: 'capped', reason: 'queue_timeout' }), 0);
  assert.equal(gated.arrived(), 3, 'the instance never had more than the cap');
  gated.open();
  const results = await Promise.all(answers);
  const served = results.filter((r) => r.status === 200);
  const shed = results.filter((r) => r.status === 503);
  assert.equal(served.length, 5);
  assert.equal(shed.length, 3);
  for (const r of shed) {
    assert.equal(r.headers['retry-after'], '1');
    assert.equal(r.headers['x-baton-error'], 'at_capacity');
    assert.match(r.body, /in-flight request limit/);
  }
  assert.equal(gated.arrived(), 5, 'the instance saw the 3 admitted and the 2 queued, none of the shed');
  await load.waitFor(300, 30_000);
  const other = await load.stop();
  assert.equal(other.failed, 0, other.errors.join('; '));
  assert.equal(otherSeen(), other.total);
  const rc = proxy.routingCounters('capped');
  assert.deepEqual([rc.queued, rc.shed, rc.queueTimeouts, rc.queuedNow], [2, 3, 0, 0]);
  // Shedding is its own outcome: counted as requests, not as baton's failures.
  const c = proxy.counters('capped');
  assert.equal(c.requests, 8);
  assert.equal(c.failed, 0);
  assert.equal(proxy.counters('other').failed, 0);
});

test('a request that waits past queue_timeout is shed; the instance never sees it', async (t) => {
  const { proxy, port, gated } = await cappedProxy(t, { maxInflight: 1, maxQueued: 5, queueTimeoutMs: 300 });
  const first = request(port, { headers: { host: 'capped.test' } });
  await waitUntil(() => gated.arrived() === 1, 10_000, 'the first request to be in flight');
  const second = await request(port, { headers: { host: 'capped.test' } });
  assert.equal(second.status, 503);
  assert.equal(second.headers['retry-after'], '1');
  assert.equal(second.headers['x-baton-error'], 'at_capacity');
  assert.equal(proxy.routingCounters('capped').queueTimeouts, 1);
  gated.open();
  assert.equal((await first).status, 200);
  assert.equal(gated.arrived(), 1);
  const prom = parsePrometheus(proxy.prometheusText());
  assert.equal(promValue(prom.samples, 'baton_shed_requests_total', { service: 'capped', reason: 'queue_timeout' }), 1);
});

test('a client that leaves while queued frees its place; the slot goes to the next one', async (t) => {
  const { proxy, port, gated } = await cappedProxy(t, { maxInflight: 1, maxQueued: 5 });
  const first = request(port, { path: '/first', headers: { host: 'capped.test' } });
  await waitUntil(() => gated.arrived() === 1, 10_000, 'the first request to be in flight');
  const leaving = net.connect(port, '127.0.0.1');
  t.after(() => leaving.destroy());
  leaving.on('error', () => undefined);
  leaving.write('GET /gone HTTP/1.1\r\nHost: capped.test\r\n\r\n');
  await waitUntil(() => proxy.routingCounters('capped').queuedNow === 1, 10_000, 'the second request to wait');
  const third = request(port, { path: '/third', headers: { host: 'capped.test' } });
  await waitUntil(() => proxy.routingCounters('capped').queuedNow === 2, 10_000, 'the third request to wait');
  leaving.destroy();
  await waitUntil(() => proxy.routingCounters('capped').queuedNow === 1, 10_000, 'the leaving client to be out of the queue');
  assert.equal(proxy.routingCounters('capped').abandoned, 1);
  gated.open();
  assert.equal((await first).status, 200);
  assert.equal((await third).status, 200);
  assert.equal(gated.arrived(), 2, 'the client that left was never forwarded');
});

test('raising the cap (a reload) admits the waiting requests at once; removing it admits all', async (t) => {
  const { proxy, port, gated } = await cappedProxy(t, { maxInflight: 1, maxQueued: 10 });
  const answers = [0, 1, 2, 3].map((i) => request(port, { path: `/w${i}`, headers: { host: 'capped.test' } }));
  await waitUntil(() => gated.arrived() === 1 && proxy.routingCounters('capped').queuedNow === 3, 10_000, '1 in flight and 3 waiting');
  const spec = (cap: Partial<ServiceLimits> | null) => ({
    services: [
      service('capped', [target('c', gated.port)], { hosts: ['capped.test'], limits: cap === null ? null : limits(cap) }),
      service('other', [target('o', 1)], { isDefault: true }),
    ],
  });
  proxy.apply(spec({ maxInflight: 3, maxQueued: 10 }));
  await waitUntil(() => gated.arrived() === 3 && proxy.routingCounters('capped').queuedNow === 1, 10_000, 'the raised cap to admit two more');
  proxy.apply(spec(null));
  await waitUntil(() => gated.arrived() === 4, 10_000, 'no cap: the last one admitted');
  gated.open();
  for (const r of await Promise.all(answers)) assert.equal(r.status, 200);
});

test('a request with a body waits without its body being read, then streams it whole once admitted; a shed one\'s connection stays usable', async (t) => {
  const bodies: number[] = [];
  let gateOpen!: () => void;
  const gate = new Promise<void>((resolve) => (gateOpen = resolve));
  const up = await startServer(t, (req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => {
      bodies.push(n);
      void gate.then(() => res.end(`got ${n}`));
    });
  });
  const proxy = new Proxy({ logger: silentLogger, clientIdleTimeoutMs: 5000, headersTimeoutMs: 5000, closeTimeoutMs: 3000 });
  const [addr] = await proxy.listen([{ host: '127.0.0.1', port: 0 }]);
  t.after(() => withTimeout(proxy.close(), 8000, 'proxy.close()'));
  proxy.apply({ services: [service('s', [target('u', up.port)], { isDefault: true, limits: limits({ maxInflight: 1, maxQueued: 1, queueTimeoutMs: 30_000 }) })] });
  const port = addr!.port;
  const body = Buffer.alloc(2 * 1024 * 1024, 120);
  const first = request(port, { method: 'POST', body });
  await waitUntil(() => bodies.length === 1, 10_000, 'the first body to reach the instance');
  const second = request(port, { method: 'POST', body });
  await waitUntil(() => proxy.routingCounters('s').queuedNow === 1, 10_000, 'the second request to wait');
  // A third is shed at once; Node discards its body and the connection goes on.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const shed = await request(port, { method: 'POST', body: Buffer.alloc(100_000, 121), agent });
  assert.equal(shed.status, 503);
  assert.equal(shed.headers.connection, 'keep-alive');
  gateOpen();
  assert.equal((await first).body, `got ${body.length}`);
  assert.equal((await second).body, `got ${body.length}`, 'the waiting body streamed whole once admitted');
  assert.equal((await request(port, { agent })).status, 200, 'the shed request\'s connection was reused');
  assert.deepEqual(bodies, [body.length, body.length, 0], 'the instance saw the two admitted bodies whole, then the GET; never the shed body');
});

test('a waiting request with a body that passes queue_timeout: 503, its body discarded, its connection reused', async (t) => {
  const { proxy, port, gated } = await cappedProxy(t, { maxInflight: 1, maxQueued: 1, queueTimeoutMs: 300 });
  const first = request(port, { headers: { host: 'capped.test' } });
  await waitUntil(() => gated.arrived() === 1, 10_000, 'the first request to be in flight');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const late = await request(port, { method: 'POST', headers: { host: 'capped.test' }, body: Buffer.alloc(1024 * 1024, 122), agent });
  assert.equal(late.status, 503);
  assert.equal(late.headers.connection, 'keep-alive');
  assert.equal(proxy.routingCounters('capped').queueTimeouts, 1);
  gated.open();
  assert.equal((await first).status, 200);
  const again = await request(port, { headers: { host: 'capped.test' }, agent });
  assert.equal(again.status, 200);
  assert.equal(gated.arrived(), 2);
});

test('closing the proxy answers the waiting requests 503 at once and lets the ones in flight finish', async (t) => {
  const { proxy, port, gated } = await cappedProxy(t, { maxInflight: 1, maxQueued: 5 });
  const first = request(port, { headers: { host: 'capped.test' } });
  await waitUntil(() => gated.arrived() === 1, 10_000, 'the first request to be in flight');
  const waiting = request(port, { headers: { host: 'capped.test' } });
  await waitUntil(() => proxy.routingCounters('capped').queuedNow === 1, 10_000, 'the second request to wait');
  const closed = proxy.close();
  const r = await waiting;
  assert.equal(r.status, 503);
  assert.equal(r.headers['x-baton-error'], 'at_capacity');
  gated.open();
  assert.equal((await first).status, 200);
  await withTimeout(closed, 10_000, 'proxy.close()');
  assert.equal(gated.arrived(), 1);
});

test('a request waiting for a slot when its service is paused, or put under maintenance, is held or answered by the gate: the instance never sees it', async (t) => {
  const { proxy, port, gated } = await cappedProxy(t, { maxInflight: 1, maxQueued: 5 });
  const spec = (extra: Record<string, unknown>) => ({
    services: [
      service('capped', [target('c', gated.port)], { hosts: ['capped.test'], limits: limits({ maxInflight: 1, maxQueued: 5 }), ...extra }),
      service('other', [target('o', 1)], { isDefault: true }),
    ],
  });
  const first = request(port, { path: '/first', headers: { host: 'capped.test' } });
  await waitUntil(() => gated.arrived() === 1, 10_000, 'the first request to be in flight');
  const paused = request(port, { path: '/paused', headers: { host: 'capped.test' } });
  await waitUntil(() => proxy.routingCounters('capped').queuedNow === 1, 10_000, 'the second request to wait for a slot');
  // The service is paused (a migration runs): the slot the first request frees must not let the waiting one through.
  proxy.apply(spec({ pause: { maxQueued: 5, maxWaitMs: 30_000 } }));
  gated.open();
  assert.equal((await first).status, 200);
  await waitUntil(() => proxy.routingCounters('capped').heldNow === 1, 10_000, 'the waiting request to be held by the pause once admitted');
  assert.equal(gated.arrived(), 1, 'the paused service\'s instance saw no request');
  proxy.apply(spec({}));
  assert.equal((await paused).status, 200, 'the held request goes on once the pause ends');
  assert.equal(gated.arrived(), 2);

  // The same under maintenance: the waiting request gets the maintenance page, not the instance.
  const gated2 = await gatedInstance(t);
  const spec2 = (extra: Record<string, unknown>) => ({
    services: [
      service('capped', [target('c2', gated2.port)], { hosts: ['capped.test'], limits: limits({ maxInflight: 1, maxQueued: 5 }), ...extra }),
      service('other', [target('o', 1)], { isDefault: true }),
    ],
  });
  proxy.apply(spec2({}));
  const busy = request(port, { path: '/busy', headers: { host: 'capped.test' } });
  await waitUntil(() => gated2.arrived() === 1, 10_000, 'a request to be in flight on the second instance');
  const waiting = request(port, { path: '/waiting', headers: { host: 'capped.test' } });
  await waitUntil(() => proxy.routingCounters('capped').queuedNow === 1, 10_000, 'a request to wait for a slot');
  proxy.apply(spec2({ maintenance: { html: '<p>back soon</p>', retryAfterSeconds: 30, allow: [] } }));
  gated2.open();
  assert.equal((await busy).status, 200);
  const m = await waiting;
  assert.equal(m.status, 503);
  assert.match(m.body, /back soon/);
  assert.equal(gated2.arrived(), 1, 'the instance under maintenance saw no request');
});
