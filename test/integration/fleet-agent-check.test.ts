// The daemon's side of the balancer: `baton drain` / `undrain` set the host's
// drain state, HAProxy's agent-check port answers it (ready up 100% / drain /
// maint / ready up NN%), /_baton/health turns 503 while drained, and the state
// survives a daemon restart (an operator's decision is not forgotten by a crash);
// `baton drain --wait-quiet` returns once nothing is in flight, and says so when
// the host stays busy past --timeout.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { createDaemon, waitUntil } from '../helpers/daemon.ts';

function agent(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    s.on('data', (d) => (out += d));
    s.once('error', reject);
    s.once('close', () => resolve(out));
  });
}

test('drain state: agent-check answers, /_baton/health, kept across a daemon restart', async (t) => {
  const d = await createDaemon({ start: false });
  t.after(() => d.cleanup());
  const base = await readFile(d.configFile, 'utf8');
  // Held by the harness until the daemon has it.
  const agentPort = await d.holdPort('agent-check');
  await writeFile(d.configFile, `agent_check: "127.0.0.1:${agentPort}"\n${base}`);
  await d.start();
  assert.equal(await agent(agentPort), 'ready up 100%\n');
  assert.equal((await fetch(`${d.url}/_baton/health`)).status, 200);

  const r = await d.cli(['drain', '--reason', 'kernel update', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).mode, 'drain');
  assert.equal(await agent(agentPort), 'drain\n');
  assert.equal((await fetch(`${d.url}/_baton/health`)).status, 503);
  const st = await d.status();
  assert.equal(st.host.drain.mode, 'drain');
  assert.equal(st.host.drain.reason, 'kernel update');
  assert.equal(st.host.agentCheck, `127.0.0.1:${agentPort}`);

  // A crash and a new daemon: still drained.
  await d.kill9();
  await d.start();
  assert.equal(await agent(agentPort), 'drain\n');
  assert.equal((await fetch(`${d.url}/_baton/health`)).status, 503);

  assert.equal((await d.cli(['drain', '--maint'])).code, 0);
  assert.equal(await agent(agentPort), 'maint\n');
  const w = await d.cli(['undrain', '--weight', '30%']);
  assert.equal(w.code, 0, w.stderr);
  assert.match(w.stdout, /host ready at 30% of its weight/);
  assert.equal(await agent(agentPort), 'ready up 30%\n');
  assert.equal((await fetch(`${d.url}/_baton/health`)).status, 200);
  const bad = await d.cli(['undrain', '--weight', '0%']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--weight must be a percentage from 1 to 100, got "0%"/);
  assert.equal((await d.cli(['undrain'])).code, 0);
  assert.equal(await agent(agentPort), 'ready up 100%\n');
});

test('drain --wait-quiet: refused with the count while a request is held past --timeout; returns once quiet', async (t) => {
  const d = await createDaemon();
  t.after(() => d.cleanup());
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
  const held = new AbortController();
  t.after(() => held.abort());
  const slow = fetch(`${d.url}/slow?ms=60000`, { signal: held.signal }).catch(() => undefined);
  await waitUntil('the slow request to be in flight', async () => (await d.status('web')).services[0].instances.some((i: { inflight: number }) => i.inflight > 0), 10_000);

  const busy = await d.cli(['drain', '--wait-quiet', '200ms', '--timeout', '1s']);
  assert.equal(busy.code, 1, busy.stderr);
  assert.match(busy.stderr, /still busy after 1\.0s: 1 request\(s\) or WebSocket\(s\) in flight; the host stays drained \(`baton undrain` puts it back\)/);
  assert.equal((await d.status()).host.drain.mode, 'drain');

  held.abort();
  await slow;
  const quiet = await d.cli(['drain', '--wait-quiet', '300ms', '--timeout', '20s', '--json']);
  assert.equal(quiet.code, 0, quiet.stderr);
  const out = JSON.parse(quiet.stdout) as { mode: string; quietAfterMs: number };
  assert.equal(out.mode, 'drain');
  assert.ok(out.quietAfterMs >= 300, `quiet after ${out.quietAfterMs} ms, less than the 300 ms asked`);
});
