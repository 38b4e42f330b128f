import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { startLoad } from '../helpers/load.ts';
import { request, service, startApp, startProxy, startServer, target, withTimeout } from '../fixtures/proxy-harness.ts';

test('apply() swaps targets under keep-alive load with 0 failed requests', async (t) => {
  const v1 = await startApp(t, { APP_VERSION: 'v1' });
  const v2 = await startApp(t, { APP_VERSION: 'v2' });
  const { proxy, origin } = await startProxy(t);
  const only = (id: string, port: number) => ({ services: [service('s', [target(id, port)], { isDefault: true })] });
  proxy.apply(only('v1', v1.port));

  const load = startLoad({ url: `${origin}/`, concurrency: 4, maxMs: 15_000 });
  t.after(() => load.stop());
  await load.waitFor(100, 10_000);
  // Back and forth while both run, then for good.
  for (const [id, port] of [['v2', v2.port], ['v1', v1.port], ['v2', v2.port]] as const) {
    proxy.apply(only(id, port));
    await load.waitFor(load.snapshot().total + 60, 10_000);
  }
  // The old instance leaves: drain, forget, stop it; traffic keeps flowing to v2.
  const drained = await proxy.drain('v1', 5000);
  assert.equal(drained.abandonedRequests, 0);
  await proxy.forget('v1');
  v1.child.kill('SIGTERM');
  await withTimeout(once(v1.child, 'exit'), 5000, 'v1 to exit');
  await load.waitFor(load.snapshot().total + 100, 10_000);
  const result = await load.stop();

  assert.equal(result.failed, 0, `failures: ${result.errors.join('; ')}`);
  assert.ok((result.bodies['v1'] ?? 0) > 0 && (result.bodies['v2'] ?? 0) > 0);
  const c = proxy.counters('s');
  assert.equal(c.failed, 0);
  assert.equal(c.requests, result.total);
  assert.deepEqual(proxy.targets().map((s) => [s.id, s.inService, s.inflight]), [['v2', true, 0]]);
});

test('drain() waits for a running 2 s request, and gives up at its deadline', async (t) => {
  const arrived: (() => void)[] = [];
  const timers = new Set<NodeJS.Timeout>();
  t.after(() => timers.forEach(clearTimeout));
  const a = await startServer(t, (req, res) => {
    arrived.shift()?.();
    timers.add(setTimeout(() => res.end('done'), Number(new URL(req.url!, 'http://x').searchParams.get('ms'))));
  });
  const b = await startServer(t, (_req, res) => res.end('b'));
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('a', a.port)], { isDefault: true })] });

  const reachedApp = () => new Promise<void>((resolve) => arrived.push(resolve));
  let reached = reachedApp();
  const slow = request(port, { path: '/slow?ms=2000' });
  await withTimeout(reached, 5000, 'the slow request to reach the app');
  // Move traffic away; the old target finishes what it runs.
  proxy.apply({ services: [service('s', [target('b', b.port)], { isDefault: true })] });
  assert.equal((await request(port)).body, 'b');
  const result = await proxy.drain('a', 10_000);
  assert.equal(result.abandonedRequests, 0);
  assert.equal(result.closedWebSockets, 0);
  assert.ok(result.durationMs >= 1500, `drained in ${result.durationMs} ms, before the request finished`); // and not at the deadline: nothing abandoned
  const r = await slow;
  assert.equal(r.status, 200);
  assert.equal(r.body, 'done');
  const stats = proxy.targets().find((s) => s.id === 'a')!;
  assert.deepEqual([stats.inService, stats.inflight], [false, 0]);

  // Deadline shorter than the request: drain resolves at the deadline and reports it.
  proxy.apply({ services: [service('s', [target('a', a.port)], { isDefault: true })] });
  reached = reachedApp();
  const slow2 = request(port, { path: '/slow?ms=1500' });
  await withTimeout(reached, 5000, 'the second slow request to reach the app');
  proxy.apply({ services: [service('s', [target('b', b.port)], { isDefault: true })] });
  const early = await proxy.drain('a', 200);
  assert.equal(early.abandonedRequests, 1);
  assert.ok(early.durationMs >= 150, `gave up after ${early.durationMs} ms, before the deadline`); // at the deadline, not when the request ended: 1 abandoned
  // The request itself is not cut by drain(): stopping the instance is the daemon's next step.
  assert.equal((await slow2).status, 200);
  await proxy.forget('a');
  assert.deepEqual(proxy.targets().map((s) => s.id), ['b']);
  assert.equal(proxy.counters('s').failed, 0);
});

test('drain() of an unknown target resolves at once; forget() of a target in service is refused', async (t) => {
  const a = await startServer(t, (_req, res) => res.end('a'));
  const { proxy, port } = await startProxy(t);
  assert.deepEqual(await proxy.drain('nope', 1000), { abandonedRequests: 0, closedWebSockets: 0, durationMs: 0 });
  proxy.apply({ services: [service('s', [target('a', a.port)], { isDefault: true })] });
  await proxy.forget('a');
  assert.equal((await request(port)).body, 'a');
  assert.equal(proxy.targets().length, 1);
});

test('close() lets a running request finish, then stops listening', async (t) => {
  const arrived = Promise.withResolvers<void>();
  const timers = new Set<NodeJS.Timeout>();
  t.after(() => timers.forEach(clearTimeout));
  const a = await startServer(t, (_req, res) => {
    arrived.resolve();
    timers.add(setTimeout(() => res.end('finished'), 500));
  });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('a', a.port)], { isDefault: true })] });
  const running = request(port, { path: '/slow' });
  await withTimeout(arrived.promise, 5000, 'the request to reach the app');
  await withTimeout(proxy.close(), 5000, 'close()');
  const r = await running;
  assert.equal(r.status, 200);
  assert.equal(r.body, 'finished');
  await assert.rejects(request(port), (err: Error & { code?: string }) => err.code === 'ECONNREFUSED');
});
