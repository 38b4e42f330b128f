// `baton reload` tells the truth: each changed setting is reported with when it
// takes effect, and what is reported as applied now is applied, to the running
// instances too. One test per kind of setting, with real processes.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import net from 'node:net';
import { request } from 'undici';
import { isGroupAlive } from '../../src/core/proc.ts';
import { createDaemon, freePort, serviceYaml, waitUntil, withFreePort, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad } from '../helpers/load.ts';
import { APACHE_LIKE, fixtureRelease } from '../fixtures/fixture-release.ts';

/** A service running `server.mjs` of its release; `settings` are YAML lines under it. */
function service(settings: string[], name = 'web'): string {
  return [
    `  ${name}:`,
    `    command: exec "${process.execPath}" server.mjs`,
    ...settings.map((l) => `    ${l}`),
  ].join('\n');
}

const BASE = [
  'instances: 1',
  'health: { path: /healthz, interval: 200ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 2, start_timeout: 10s }',
  'standby: 0s',
];

/** Write the config: top-level lines, then the services. */
async function configure(d: TestDaemon, services: string, top: string[] = []): Promise<void> {
  await d.writeConfig(services);
  if (top.length === 0) return;
  let cfg = await readFile(d.configFile, 'utf8');
  // The helper writes a log_level of its own.
  if (top.some((l) => l.startsWith('log_level:'))) cfg = cfg.replace(/^log_level: .*\n/m, '');
  await writeFile(d.configFile, `${top.join('\n')}\n${cfg}`);
}

async function daemonWith(t: TestContext, services: string, top: string[] = []): Promise<TestDaemon> {
  const d = await createDaemon({ start: false });
  t.after(() => d.cleanup());
  await configure(d, services, top);
  await d.start();
  return d;
}

/** A release whose server.mjs is the Apache-like fixture answering `version`. */
const apacheRelease = (d: TestDaemon, version: string): Promise<string> => fixtureRelease(d, APACHE_LIKE, version);

async function reload(d: TestDaemon): Promise<string> {
  const r = await d.cli(['reload']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return r.stdout;
}

async function get(url: string): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  const r = await request(url);
  return { status: r.statusCode, body: (await r.body.text()).trim(), headers: r.headers };
}

test('stop_signal changed by a reload is the signal the running instances get: SIGWINCH lets Apache finish', async (t) => {
  // The held request outlives the drain timeout, so the stop signal decides its fate.
  const settings = [...BASE, 'drain_timeout: 300ms', 'stop_timeout: 30s'];
  const d = await daemonWith(t, service(settings));
  assert.equal((await d.cli(['deploy', 'web', await apacheRelease(d, 'v1')])).code, 0);

  await configure(d, service([...settings, 'stop_signal: SIGWINCH']));
  const out = await reload(d);
  assert.match(out, /services\.web\.stop_signal: "SIGTERM" → "SIGWINCH" \(applies now, to the running instances too\)/);

  const [old] = (await d.status('web')).services[0].instances;
  // A request the app answers only once its graceful stop begins: in flight when the stop signal comes.
  const held = get(d.url + '/hold');
  await waitUntil('the held request to be in flight', async () => (await d.status('web')).services[0].instances.some((i: any) => i.inflight > 0), 5_000, 20);
  const load = startLoad({ url: d.url + '/', concurrency: 4, maxMs: 60_000 });
  await load.waitFor(50, 10_000);
  const r = await d.cli(['deploy', 'web', await apacheRelease(d, 'v2')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const s = await held;
  const result = await load.stop();
  assert.deepEqual({ status: s.status, body: s.body }, { status: 200, body: 'v1' }, 'the held request finished on the old instance');
  assert.equal(result.failed, 0, result.errors.join('; '));
  assert.ok((result.bodies['v2'] ?? 0) > 0, 'the new release served');
  const log = await readFile(path.join(d.dir, 'state', 'logs', 'web', `${old.id}.log`), 'utf8');
  assert.match(log, /SIGWINCH: graceful stop, finishing [1-9]\d* request/, 'the old instance got SIGWINCH with the held request in flight');
});

test('health settings changed by a reload are used for the running instances at once', async (t) => {
  const d = await daemonWith(t, service(BASE));
  assert.equal((await d.cli(['deploy', 'web', await apacheRelease(d, 'v1')])).code, 0);
  const hits = async (): Promise<Record<string, number>> => JSON.parse((await get(d.url + '/hits')).body);
  assert.equal((await hits())['/alt-health'], undefined);

  await configure(d, service(BASE.map((l) => l.replace('path: /healthz', 'path: /alt-health'))));
  assert.match(await reload(d), /services\.web\.health\.path: "\/healthz" → "\/alt-health" \(applies now, to the running instances too\)/);
  await waitUntil('the running instance to be checked on the new path', async () => ((await hits())['/alt-health'] ?? 0) >= 2, 10_000, 100);
  const healthzBefore = (await hits())['/healthz'] ?? 0;
  await waitUntil('two more checks on the new path', async () => ((await hits())['/alt-health'] ?? 0) >= 4, 10_000, 100);
  assert.equal((await hits())['/healthz'] ?? 0, healthzBefore, 'the old path is no longer checked');
});

test('proxy timeouts, metrics_listen and log_level changed by a reload apply at once', async (t) => {
  const d = await daemonWith(t, service(BASE), ['proxy: { client_idle_timeout: 10m }', 'log_level: debug']);
  assert.equal((await d.cli(['deploy', 'web', await apacheRelease(d, 'v1')])).code, 0);
  // Node announces the idle timeout it will apply to the connection.
  assert.equal((await get(d.url + '/')).headers['keep-alive'], 'timeout=600');

  // The daemon binds the metrics port itself: another one if it was taken meanwhile.
  const { port: metricsA, out } = await withFreePort(async (port) => {
    await configure(d, service(BASE), ['proxy: { client_idle_timeout: 2s }', `metrics_listen: "127.0.0.1:${port}"`, 'log_level: warn']);
    return { port, out: await reload(d) };
  });
  assert.match(out, /proxy\.client_idle_timeout: 10m00s → 2\.0s \(applies now\)/);
  assert.match(out, new RegExp(`metrics_listen: \\(none\\) → 127\\.0\\.0\\.1:${metricsA} \\(applies now\\)`));
  assert.match(out, /log_level: "debug" → "warn" \(applies now\)/);

  // An open idle connection is closed by the new timeout (the old one was 10 minutes).
  assert.equal((await get(d.url + '/')).headers['keep-alive'], 'timeout=2');
  const sock = net.connect(d.port, '127.0.0.1');
  let closed = false;
  sock.on('close', () => (closed = true)).on('error', () => {}).resume();
  sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  await waitUntil('the proxy to close the idle connection', () => closed, 30_000, 50);

  const metrics = await get(`http://127.0.0.1:${metricsA}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.body, /baton_/);

  // Info lines are dropped at warn...
  assert.equal((await d.cli(['maintenance', 'web', 'on'])).code, 0);
  // ...and written again once the level is back to debug (this also shows the log is flushed).
  const { port: metricsB, out: outB } = await withFreePort(async (port) => {
    await configure(d, service(BASE), ['proxy: { client_idle_timeout: 2s }', `metrics_listen: "127.0.0.1:${port}"`, 'log_level: debug']);
    return { port, out: await reload(d) };
  });
  assert.match(outB, /metrics_listen: 127\.0\.0\.1:\d+ → 127\.0\.0\.1:\d+ \(applies now\)/);
  assert.equal((await d.cli(['maintenance', 'web', 'off'])).code, 0);
  await waitUntil('the info line after the level went back to debug', async () => /maintenance mode off/.test(await d.daemonLog()), 5_000);
  assert.doesNotMatch(await d.daemonLog(), /maintenance mode on/, 'an info line was written at log_level warn');

  assert.equal((await get(`http://127.0.0.1:${metricsB}/metrics`)).status, 200);
  await assert.rejects(get(`http://127.0.0.1:${metricsA}/metrics`), /ECONNREFUSED/, 'the old metrics listener is closed');
});

test('env changed by a reload is reported for the next deploy or restart, and the running instances keep the old one', async (t) => {
  const d = await daemonWith(t, service(BASE));
  assert.equal((await d.cli(['deploy', 'web', await apacheRelease(d, 'v1')])).code, 0);
  const changed = BASE.map((l) => l.replace('standby: 0s', 'standby: 1m'));
  await configure(d, service([...changed, 'env: { APP_VERSION: from-env }', 'keep_releases: 2', 'maintenance: { page: /nonexistent.html }']));
  const out = await reload(d);
  assert.match(out, /services\.web\.env: changed \(applies on the next deploy or restart; running instances keep the old value\)/);
  assert.match(out, /services\.web\.keep_releases: .* \(applies from the next deploy\)/);
  assert.match(out, /services\.web\.standby: 0ms → 1m00s \(applies to the next warm standby/);
  assert.match(out, /services\.web\.maintenance\.page: .* \(applies the next time maintenance mode is turned on\)/);
  for (let i = 0; i < 5; i++) assert.equal((await get(d.url + '/')).body, 'v1', 'the running instance keeps its environment');
  assert.equal((await d.cli(['restart', 'web'])).code, 0);
  assert.equal((await get(d.url + '/')).body, 'from-env');
});

test('a reload that needs a daemon restart, or resizes a service mid-deploy, is refused and changes nothing', async (t) => {
  // A start timeout long enough for an instance that waits for the test to let it listen.
  const base = BASE.map((l) => l.replace('start_timeout: 10s', 'start_timeout: 60s'));
  const d = await daemonWith(t, service([...base, 'drain_timeout: 1s']));
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
  const other = await freePort();
  await writeFile(d.configFile, (await readFile(d.configFile, 'utf8')).replace(`127.0.0.1:${d.port}`, `127.0.0.1:${other}`).replace('drain_timeout: 1s', 'stop_signal: SIGINT'));
  const r = await d.cli(['reload']);
  assert.notEqual(r.code, 0, r.stdout);
  assert.match(r.stdout + r.stderr, /listen: .*only a daemon restart applies it/);
  assert.equal((await get(d.url + '/')).body, 'v1');

  // A deployment in progress sized its new group from the old count.
  await configure(d, service([...base, 'drain_timeout: 1s']));
  // It starts only once the reload below was refused, so that reload surely comes before the switch (a deployment holds its service until then).
  const mayStart = path.join(d.dir, 'v2-may-start');
  const deploy = d.cli(['deploy', 'web', await d.release('v2', { APP_START_FILE: mayStart })]);
  await waitUntil('the deploy to be starting instances', async () => (await d.status('web')).services[0].instances.some((i: any) => i.role === 'incoming'), 10_000);
  await configure(d, service([...base.map((l) => l.replace('instances: 1', 'instances: 2')), 'drain_timeout: 1s']));
  const refused = await d.cli(['reload']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stdout + refused.stderr, /services\.web\.instances: changed while deployment #\d+ runs/);
  await writeFile(mayStart, '');
  const deployed = await deploy;
  assert.equal(deployed.code, 0, deployed.stdout + deployed.stderr);
  const s = (await d.status('web')).services[0];
  assert.equal(s.instances.filter((i: any) => i.role === 'current').length, 1, JSON.stringify(s.instances));
  // Once the deployment is done the same reload applies.
  assert.match(await reload(d), /services\.web\.instances: 1 → 2 \(applies now\)/);
  await waitUntil('two healthy instances', async () => (await d.status('web')).services[0].instances.filter((i: any) => i.role === 'current' && i.healthy).length === 2, 10_000);
});

test('a reload scales a service 2 → 3 → 1 under load with 0 failed', async (t) => {
  const d = await createDaemon({ services: serviceYaml({ instances: 2, extra: 'standby: 0s' }) });
  t.after(() => d.cleanup());
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
  const current = async (): Promise<any[]> => (await d.status('web')).services[0].instances.filter((i: any) => i.role === 'current');
  const first = (await current()).map((i) => i.pid);
  const load = startLoad({ url: d.url + '/', concurrency: 4, maxMs: 90_000 });
  await load.waitFor(100, 10_000);

  await d.writeConfig(serviceYaml({ instances: 3, extra: 'standby: 0s' }));
  assert.match(await reload(d), /services\.web\.instances: 2 → 3 \(applies now\)/);
  await waitUntil('three healthy instances', async () => (await current()).filter((i) => i.healthy).length === 3, 15_000, 100);
  const three = (await current()).map((i) => i.pid);
  for (const pid of first) assert.ok(three.includes(pid), 'scaling up keeps the running instances');

  await d.writeConfig(serviceYaml({ instances: 1, extra: 'standby: 0s' }));
  assert.match(await reload(d), /services\.web\.instances: 3 → 1 \(applies now\)/);
  await waitUntil('one instance left', async () => (await current()).length === 1, 15_000, 100);
  const [left] = await current();
  for (const pid of three.filter((p) => p !== left.pid)) await waitUntil(`instance group ${pid} to be gone`, () => !isGroupAlive(pid), 15_000);
  const seen = load.snapshot().total;
  await load.waitFor(seen + 100, 10_000);
  const result = await load.stop();
  assert.equal(result.failed, 0, result.errors.join('; '));
  assert.deepEqual(Object.keys(result.bodies), ['v1']);
});

test('a reload that removes a service drains and stops it; the other keeps serving under load', async (t) => {
  const both = (withApi: boolean): string => [
    serviceYaml({ name: 'web', extra: 'hosts: [web.test]\nstandby: 0s' }),
    ...(withApi ? [serviceYaml({ name: 'api', extra: 'hosts: [api.test]\nstandby: 0s' })] : []),
  ].join('\n');
  const d = await createDaemon({ services: both(true) });
  t.after(() => d.cleanup());
  assert.equal((await d.cli(['deploy', 'web', await d.release('w1')])).code, 0);
  assert.equal((await d.cli(['deploy', 'api', await d.release('a1')])).code, 0);
  const apiPids = (await d.status('api')).services[0].instances.map((i: any) => i.pid);
  assert.equal(apiPids.length, 2);

  const load = startLoad({ url: d.url + '/', headers: { host: 'web.test' }, concurrency: 4, maxMs: 90_000 });
  await load.waitFor(100, 10_000);
  // Held by the app until the service is removed: in flight while it drains.
  const go = path.join(d.dir, 'release-held');
  const apiHeld = request(`${d.url}/wait?file=${encodeURIComponent(go)}`, { headers: { host: 'api.test' } }).then(async (r) => ({ status: r.statusCode, body: (await r.body.text()).trim() }));
  await waitUntil('the api request to be in flight', async () => (await d.status('api')).services[0].instances.some((i: any) => i.inflight > 0), 7_000, 20);

  await d.writeConfig(both(false));
  assert.match(await reload(d), /services\.api: removed \(its instances are drained and stopped now\)/);
  await writeFile(go, '');
  assert.deepEqual(await apiHeld, { status: 200, body: 'a1' }, 'the request in flight on the removed service finished');
  for (const pid of apiPids) await waitUntil(`api instance group ${pid} to be gone`, () => !isGroupAlive(pid), 15_000);
  const gone = await d.cli(['status', 'api', '--json']);
  assert.notEqual(gone.code, 0, 'the removed service is unknown');
  // Its host now falls to the default service (web, the first one).
  const byHost = await request(d.url + '/', { headers: { host: 'api.test' } });
  assert.equal((await byHost.body.text()).trim(), 'w1', 'the removed service is no longer routed');

  const seen = load.snapshot().total;
  await load.waitFor(seen + 100, 10_000);
  const result = await load.stop();
  assert.equal(result.failed, 0, result.errors.join('; '));
  assert.deepEqual(Object.keys(result.bodies), ['w1']);
});
