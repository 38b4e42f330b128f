// The test harness itself: a daemon whose port was taken between choice and
// use starts on another one instead of failing the test.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createDaemon } from '../helpers/daemon.ts';

test('createDaemon picks another port when the chosen one is taken before the daemon binds it', async (t) => {
  const squatter = net.createServer();
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => squatter.close(() => resolve())));
  const taken = (squatter.address() as net.AddressInfo).port;
  const d = await createDaemon({ port: taken, metrics: true });
  t.after(() => d.cleanup());
  assert.notEqual(d.port, taken);
  assert.match(await d.daemonLog(), /EADDRINUSE/, 'the first attempt met the taken port');
  const health = await fetch(`${d.url}/_baton/health`);
  assert.equal(health.status, 200);
  const metrics = await fetch(`http://127.0.0.1:${d.metricsPort}/metrics`);
  assert.equal(metrics.status, 200);
  await metrics.text();
  await health.text();
});
