// Health thresholds against a real HTTP endpoint whose answer the test toggles:
// the instance is a plain `sleep`, its "port" is a server inside the test.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { join } from 'node:path';
import { Instance } from '../../src/supervisor/index.ts';
import { Recorder, cleanup, serviceConfig, tempDir } from '../fixtures/sup-harness.ts';

test('healthy → unhealthy after unhealthyThreshold failures → healthy after healthyThreshold successes', async (t) => {
  let ok = true;
  let failuresSinceToggle = 0;
  let successesSinceToggle = 0;
  const server = http.createServer((req, res) => {
    assert.equal(req.url, '/healthz');
    if (ok) successesSinceToggle++;
    else failuresSinceToggle++;
    res.writeHead(ok ? 200 : 503).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');

  const dir = await tempDir(t);
  const rec = new Recorder();
  const service = serviceConfig({ command: 'exec sleep 60', health: { intervalMs: 50, healthyThreshold: 2, unhealthyThreshold: 3 } });
  const inst = cleanup(t, await Instance.spawn({ id: 'web-h', service, release: 'r1', releaseDir: dir, port: addr.port, logFile: join(dir, 'h.log') }, rec));

  await inst.waitHealthy(5000);
  assert.deepEqual(rec.health, [true]);

  ok = false;
  failuresSinceToggle = 0;
  await rec.until(() => rec.health.length === 2, 5000, 'instanceHealthChanged(false)');
  assert.deepEqual(rec.health, [true, false]);
  assert.equal(failuresSinceToggle, 3, 'unhealthy exactly at the third consecutive failure');
  assert.equal(inst.state, 'unhealthy');
  assert.equal(inst.healthy, false);
  assert.equal(inst.lastHealthError, 'HTTP 503');

  ok = true;
  successesSinceToggle = 0;
  await rec.until(() => rec.health.length === 3, 5000, 'instanceHealthChanged(true)');
  assert.deepEqual(rec.health, [true, false, true]);
  assert.equal(successesSinceToggle, 2, 'healthy again exactly at the second consecutive success');
  assert.equal(inst.state, 'healthy');
  assert.equal(inst.lastHealthError, null);

  const { forced } = await inst.stop();
  assert.equal(forced, false);
  const seen = failuresSinceToggle + successesSinceToggle;
  // No check after stop: give a would-be check two intervals to show up.
  await new Promise((resolve) => setTimeout(resolve, 150));
  assert.equal(failuresSinceToggle + successesSinceToggle, seen, 'no health check after stop()');
});

test('a health check that hangs counts as a failure after timeoutMs and does not hold the process', async (t) => {
  const hung: http.ServerResponse[] = [];
  const server = http.createServer((_req, res) => void hung.push(res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  const dir = await tempDir(t);
  const service = serviceConfig({ command: 'exec sleep 60', health: { intervalMs: 100, timeoutMs: 200 } });
  const inst = cleanup(t, await Instance.spawn({ id: 'web-s', service, release: 'r1', releaseDir: dir, port: addr.port, logFile: join(dir, 's.log') }, new Recorder()));
  await assert.rejects(inst.waitHealthy(700), { code: 'INSTANCE_UNHEALTHY' });
  assert.equal(inst.lastHealthError, 'timed out after 200 ms');
  await inst.stop();
});
