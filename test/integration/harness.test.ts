// The test harness itself: a daemon whose port was taken between choice and
// use starts on another one instead of failing the test.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFile, writeFile } from 'node:fs/promises';
import { createDaemon, withFreePort } from '../helpers/daemon.ts';

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

test('a port the test chose, taken before the daemon binds it, is picked again by withFreePort', async (t) => {
  const squatter = net.createServer();
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => squatter.close(() => resolve())));
  const taken = (squatter.address() as net.AddressInfo).port;
  const d = await createDaemon({ start: false });
  t.after(() => d.cleanup());
  const base = await readFile(d.configFile, 'utf8');
  const tried: number[] = [];
  const agentPort = await withFreePort(async (free) => {
    const port = tried.length === 0 ? taken : free;
    tried.push(port);
    await writeFile(d.configFile, `agent_check: "127.0.0.1:${port}"\n${base}`);
    await d.start();
    return port;
  });
  assert.deepEqual(tried, [taken, agentPort], 'one failed start on the taken port, then another port');
  const starts = (await d.daemonLog()).split('\n').filter((l) => /EADDRINUSE/.test(l)).length;
  assert.equal(starts, 1, 'the harness did not re-pick its own ports for a port the test chose');
  const answer = await new Promise<string>((resolve, reject) => {
    let out = '';
    net.connect(agentPort, '127.0.0.1').on('data', (c) => (out += String(c))).on('end', () => resolve(out)).on('error', reject);
  });
  assert.match(answer, /^ready/);
});
