// The limits as an operator sets them: baton.yaml's proxy and service limits
// reach a real daemon's proxy, each answer names its limit, and `baton reload`
// changes them at once (and says so).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { request } from 'undici';
import { createDaemon, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';

async function configure(d: TestDaemon, limits: string, proxy: string): Promise<void> {
  await d.writeConfig(serviceYaml({ instances: 1, extra: `limits: ${limits}` }));
  await writeFile(d.configFile, `proxy: ${proxy}\n${await readFile(d.configFile, 'utf8')}`);
}

async function call(url: string, opts: { method?: 'GET' | 'POST'; body?: string; signal?: AbortSignal } = {}): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  const r = await request(url, { method: opts.method ?? 'GET', body: opts.body, signal: opts.signal, headers: { accept: 'text/plain' } });
  return { status: r.statusCode, body: await r.body.text(), headers: r.headers };
}

test('limits from baton.yaml: 413, 414 and the in-flight cap answer with their pages; a reload changes them at once', async (t) => {
  const d = await createDaemon({ start: false });
  t.after(() => d.cleanup());
  await configure(d, '{ max_body_size: 1KB, max_inflight: 1, max_queued: 0 }', '{ max_url_length: 1KB }');
  await d.start();
  const dep = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(dep.code, 0, dep.stdout + dep.stderr);

  const big = await call(`${d.url}/upload`, { method: 'POST', body: 'x'.repeat(2000) });
  assert.equal(big.status, 413);
  assert.equal(big.headers['x-baton-error'], 'body_too_large');
  assert.match(big.body, /body size limit/);
  assert.equal(JSON.parse((await call(`${d.url}/upload`, { method: 'POST', body: 'x'.repeat(500) })).body).bytes, 500);
  const long = await call(`${d.url}/${'a'.repeat(2000)}`);
  assert.equal(long.status, 414);
  assert.match(long.body, /URL length limit/);

  // One request in flight (the app answers it only after a minute: it is aborted at the end), so the next is shed.
  const hold = new AbortController();
  const held = call(`${d.url}/slow?ms=60000`, { signal: hold.signal }).catch(() => null);
  t.after(async () => {
    hold.abort();
    await held;
  });
  await waitUntil('the held request to be in flight', async () => (await d.status('web')).services[0].instances.some((i: { inflight: number }) => i.inflight > 0), 10_000, 20);
  const shed = await call(`${d.url}/`);
  assert.equal(shed.status, 503);
  assert.equal(shed.headers['x-baton-error'], 'at_capacity');
  assert.equal(shed.headers['retry-after'], '1');
  // The operator sees the shedding apart from failures.
  const svc = (await d.status('web')).services[0];
  assert.deepEqual(svc.shedding, { shed: 1, queueTimeouts: 0, queuedNow: 0 });
  assert.equal(svc.counters.failed, 0);
  const text = await d.cli(['status', 'web']);
  assert.match(text.stdout, /in-flight cap: 1 shed with 503 \(0 after waiting\), 0 waiting now/);

  await configure(d, '{ max_body_size: 4KB }', '{ max_url_length: 4KB }');
  const r = await d.cli(['reload']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /proxy\.max_url_length: 1024 → 4096 \(applies now\)/);
  assert.match(r.stdout, /services\.web\.limits: changed \(applies now\)/);
  assert.equal(JSON.parse((await call(`${d.url}/upload`, { method: 'POST', body: 'x'.repeat(2000) })).body).bytes, 2000);
  assert.equal((await call(`${d.url}/${'a'.repeat(2000)}`)).status, 200);
  // No cap any more: served beside the held request.
  assert.equal((await call(`${d.url}/`)).body, 'v1\n');
  hold.abort();
  await held;
});
