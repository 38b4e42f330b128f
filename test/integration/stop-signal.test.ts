// A non-default stop_signal reaches the app: an Apache-like app, configured with
// its graceful stop (SIGWINCH), finishes a slow request that outlives the drain
// timeout during a deploy under load; SIGTERM would have cut it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { request } from 'undici';
import { createDaemon, waitUntil } from '../helpers/daemon.ts';
import { startLoad } from '../helpers/load.ts';
import { APACHE_LIKE, fixtureRelease } from '../fixtures/fixture-release.ts';

test('stop_signal: SIGWINCH is what the old instances get in a deploy under load; the request in flight completes', async (t) => {
  const d = await createDaemon({
    services: [
      '  web:',
      `    command: exec "${process.execPath}" server.mjs`,
      '    instances: 2',
      '    health: { path: /healthz, interval: 200ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 2, start_timeout: 10s }',
      // The held request outlives the drain: the stop signal decides its fate.
      '    drain_timeout: 300ms',
      '    stop_signal: SIGWINCH',
      '    stop_timeout: 30s',
      '    standby: 0s',
    ].join('\n'),
  });
  t.after(() => d.cleanup());
  assert.equal((await d.cli(['deploy', 'web', await fixtureRelease(d, APACHE_LIKE, 'v1')])).code, 0);
  const old = (await d.status('web')).services[0].instances;

  // A request the app answers only once its graceful stop begins: in flight when the stop signal comes.
  const held = request(d.url + '/hold').then(async (r) => ({ status: r.statusCode, body: (await r.body.text()).trim() }));
  await waitUntil('the held request to be in flight', async () => (await d.status('web')).services[0].instances.some((i: any) => i.inflight > 0), 5_000, 20);
  const load = startLoad({ url: d.url + '/', concurrency: 4, maxMs: 60_000 });
  await load.waitFor(50, 10_000);
  const r = await d.cli(['deploy', 'web', await fixtureRelease(d, APACHE_LIKE, 'v2')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(await held, { status: 200, body: 'v1' }, 'the held request finished on the old instance');
  const seen = load.snapshot().total;
  await load.waitFor(seen + 50, 10_000);
  const result = await load.stop();
  assert.equal(result.failed, 0, result.errors.join('; '));
  assert.ok((result.bodies['v1'] ?? 0) > 0 && (result.bodies['v2'] ?? 0) > 0, JSON.stringify(result.bodies));

  // The app itself says which signal it got.
  const logs = path.join(d.dir, 'state', 'logs', 'web');
  let finishing = 0;
  for (const i of old) {
    const log = await readFile(path.join(logs, `${i.id}.log`), 'utf8');
    const m = /SIGWINCH: graceful stop, finishing (\d+) request/.exec(log);
    assert.ok(m, `instance ${i.id} got SIGWINCH:\n${log}`);
    assert.doesNotMatch(log, /SIGTERM/);
    finishing += Number(m[1]);
  }
  assert.ok(finishing >= 1, 'the held request was in flight when the stop signal came');
});
