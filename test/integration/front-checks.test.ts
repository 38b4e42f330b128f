// A front service's checks against real servers on loopback: the readiness
// URL (up, failing, a host's 503 "draining"), HAProxy-style agent-check lines
// (drain, maint, up NN%, an agent that cannot be reached), the operator's
// drain kept in the state directory, and what each verdict does to the
// routing spec the proxy is given.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../../src/core/log.ts';
import { FrontService } from '../../src/front/front-service.ts';
import { TargetModes } from '../../src/front/target-modes.ts';
import type { FrontServiceConfig } from '../../src/config/types.ts';
import { waitUntil } from '../helpers/daemon.ts';
import { Proxy } from '../../src/proxy/index.ts';

/** A host stand-in: its readiness answer and its agent line can be changed at any time. */
async function fakeHost(): Promise<{ port: number; agentPort: number; answer: { status: number; body: string }; agentLine: { text: string }; checks: { n: number }; closeAgent(): Promise<void>; close(): Promise<void> }> {
  const answer = { status: 200, body: 'ok' };
  const agentLine = { text: 'ready up 100%\n' };
  const checks = { n: 0 };
  const server = http.createServer((_req, res) => {
    res.writeHead(answer.status).end(answer.body);
    checks.n++;
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const agent = net.createServer((s) => {
    s.on('error', () => {});
    s.end(agentLine.text);
  });
  await new Promise<void>((r) => agent.listen(0, '127.0.0.1', r));
  let agentOpen = true;
  const closeAgent = async (): Promise<void> => {
    if (!agentOpen) return;
    agentOpen = false;
    await new Promise<void>((r) => agent.close(() => r()));
  };
  return {
    port: (server.address() as net.AddressInfo).port,
    agentPort: (agent.address() as net.AddressInfo).port,
    answer,
    agentLine,
    checks,
    closeAgent,
    async close() {
      server.closeAllConnections();
      await Promise.all([new Promise<void>((r) => server.close(() => r())), closeAgent()]);
    },
  };
}

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

test('checks and agent lines decide which targets the routing spec names, and with what weight', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'baton-front-checks-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const a = await fakeHost();
  const b = await fakeHost();
  cleanups.push(() => a.close(), () => b.close());
  // A port nothing listens on: a closed server's.
  const gone = await fakeHost();
  const goneAddress = { port: gone.port };
  await gone.close();

  const logger = createLogger('error', () => {});
  const modes = new TargetModes(dir, logger);
  let published = 0;
  const config: FrontServiceConfig = {
    name: 'shop',
    hosts: ['shop.example'],
    isDefault: true,
    targets: [
      { name: 'a', host: '127.0.0.1', port: a.port, weight: 2, agent: { host: '127.0.0.1', port: a.agentPort } },
      { name: 'b', host: '127.0.0.1', port: b.port, weight: 1, agent: null },
      { name: 'c', host: '127.0.0.1', port: goneAddress.port, weight: 1, agent: null },
    ],
    health: { path: '/_baton/health', intervalMs: 50, timeoutMs: 500, healthyThreshold: 2, unhealthyThreshold: 2 },
    balance: 'least_outstanding',
    upstream: { keepAliveTimeoutMs: 1000, connectTimeoutMs: 1000, responseTimeoutMs: 5000 },
    drainTimeoutMs: 1000,
    wsCloseSpreadMs: 0,
    limits: { maxBodyBytes: null, maxInflight: null, maxQueued: 0, queueTimeoutMs: 1000 },
  };
  const f = new FrontService(config, { logger, modes, publish: () => published++ });
  cleanups.push(async () => f.stop());
  const inSpec = (): Record<string, number> => Object.fromEntries(f.routeSpec().targets.map((t) => [t.release, t.weight ?? 1]));
  const state = (name: string): { state: string; reason: string | null } => {
    const t = f.status({ targets: [], releases: [], counters: { requests: 0, failed: 0, appErrors: 0, retries: 0, websockets: 0 } }).targets.find((x) => x.name === name)!;
    return { state: t.state, reason: t.reason };
  };

  // The first round decides: the hosts that answer are routed at once, the one that does not is not.
  await f.start();
  assert.deepEqual(inSpec(), { a: 2, b: 1 });
  // The service's limits go to the proxy with it, as for a supervised service.
  assert.deepEqual(f.routeSpec().limits, config.limits);
  assert.equal(state('c').state, 'down');
  assert.match(state('c').reason ?? '', /ECONNREFUSED/);

  // An agent's "up 50%" halves the weight; its "drain" and "maint" take the target out; "ready" puts it back.
  a.agentLine.text = 'ready up 50%\n';
  await waitUntil('a at half its weight', () => inSpec()['a'] === 1, 5000, 20);
  assert.equal(f.status({ targets: [], releases: [], counters: { requests: 0, failed: 0, appErrors: 0, retries: 0, websockets: 0 } }).targets.find((x) => x.name === 'a')!.agent, 'ready 50%');
  a.agentLine.text = 'drain\n';
  await waitUntil('a drained by its agent', () => !('a' in inSpec()), 5000, 20);
  assert.deepEqual(state('a'), { state: 'drain', reason: 'its agent says drain' });
  a.agentLine.text = 'maint\n';
  await waitUntil('a in maintenance by its agent', () => state('a').state === 'maint', 5000, 20);
  a.agentLine.text = 'ready up 100%\n';
  await waitUntil('a back at its full weight', () => inSpec()['a'] === 2, 5000, 20);
  // An agent that cannot be reached changes nothing (HAProxy's rule): the HTTP check alone decides.
  await a.closeAgent();
  const publishedBefore = published;
  const seen = a.checks.n;
  await waitUntil('three more checks of a', () => a.checks.n >= seen + 3, 5000, 20);
  assert.deepEqual(inSpec(), { a: 2, b: 1 });
  assert.equal(published, publishedBefore);
  const agentNow = f.status({ targets: [], releases: [], counters: { requests: 0, failed: 0, appErrors: 0, retries: 0, websockets: 0 } }).targets.find((x) => x.name === 'a')!.agent;
  assert.equal(agentNow, 'agent ECONNREFUSED');

  // A host that says it is drained (baton's 503 "draining") is out at once, without being "down".
  b.answer.status = 503;
  b.answer.body = 'draining';
  await waitUntil('b out as drained', () => !('b' in inSpec()), 5000, 20);
  assert.equal(state('b').state, 'drain');
  b.answer.status = 200;
  b.answer.body = 'ok';
  await waitUntil('b back', () => 'b' in inSpec(), 5000, 20);
  // A failing one (another 503) goes down after unhealthy_threshold failures, and comes back after healthy_threshold successes.
  b.answer.status = 503;
  b.answer.body = 'no instance';
  await waitUntil('b down', () => state('b').state === 'down', 5000, 20);
  assert.equal(state('b').reason, 'HTTP 503');
  b.answer.status = 200;
  await waitUntil('b back after its checks pass', () => 'b' in inSpec(), 5000, 20);

  // The operator's drain is written down first, and a new service over the same state directory keeps it.
  assert.equal(await f.setOperatorDrain('b', true, 'disk swap'), 'drain');
  assert.deepEqual(inSpec(), { a: 2 });
  const saved = JSON.parse(await readFile(path.join(dir, 'front-targets.json'), 'utf8'));
  assert.equal(saved.shop.b.reason, 'disk swap');
  const again = new TargetModes(dir, logger);
  assert.equal(again.get('shop', 'b')?.reason, 'disk swap');
  await assert.rejects(f.setOperatorDrain('z', true, ''), /service "shop" has no target "z" \(targets: a, b, c\)/);
  assert.equal(await f.setOperatorDrain('b', false, ''), 'up');
  assert.deepEqual(inSpec(), { a: 2, b: 1 });

  // A reload that removes a target names it for the daemon to drain and forget; a new one is checked at once.
  const removed = f.setConfig({ ...config, targets: config.targets.filter((t) => t.name !== 'b') });
  assert.deepEqual(removed, ['shop@b']);
  assert.deepEqual(inSpec(), { a: 2 });
});

test('a target on an IPv6 address is checked and proxied to', async () => {
  const server = http.createServer((req, res) => res.end(req.url === '/_baton/health' ? 'ok' : `v6 ${req.headers.host}`));
  await new Promise<void>((r) => server.listen(0, '::1', r));
  cleanups.push(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  const port = (server.address() as net.AddressInfo).port;
  const logger = createLogger('error', () => {});
  const dir = await mkdtemp(path.join(os.tmpdir(), 'baton-front-v6-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const proxy = new Proxy({ logger, clientIdleTimeoutMs: 5000, headersTimeoutMs: 5000 });
  cleanups.push(() => proxy.close());
  const f = new FrontService({
    name: 'v6', hosts: [], isDefault: true,
    targets: [{ name: 'a', host: '::1', port, weight: 1, agent: null }],
    health: { path: '/_baton/health', intervalMs: 1000, timeoutMs: 1000, healthyThreshold: 1, unhealthyThreshold: 1 },
    balance: 'round_robin',
    upstream: { keepAliveTimeoutMs: 1000, connectTimeoutMs: 1000, responseTimeoutMs: 5000 },
    drainTimeoutMs: 1000, wsCloseSpreadMs: 0,
    limits: { maxBodyBytes: null, maxInflight: null, maxQueued: 0, queueTimeoutMs: 1000 },
  }, { logger, modes: new TargetModes(dir, logger), publish: () => proxy.apply({ services: [f.routeSpec()] }) });
  cleanups.push(async () => f.stop());
  await f.start();
  proxy.apply({ services: [f.routeSpec()] });
  const [l] = await proxy.listen([{ host: '127.0.0.1', port: 0 }]);
  const res = await fetch(`http://127.0.0.1:${l!.port}/x`);
  assert.equal(res.status, 200);
  // The client's Host goes through to the target unchanged.
  assert.equal(await res.text(), `v6 127.0.0.1:${l!.port}`);
});
