// A WebSocket opened before a deploy stays open through the switch and is
// closed cleanly (1001) by baton only at the drain deadline.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createDaemon, serviceYaml, type TestDaemon } from '../helpers/daemon.ts';

let d: TestDaemon;
before(async () => {
  d = await createDaemon({ services: serviceYaml({ instances: 1 }).replace('drain_timeout: 5s', 'drain_timeout: 3s') });
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
});
after(async () => {
  await d?.cleanup();
});

function nextMessage(ws: WebSocket, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no WebSocket message within ${timeoutMs} ms`)), timeoutMs);
    ws.once('message', (m) => {
      clearTimeout(t);
      resolve(String(m));
    });
  });
}

test('a WebSocket survives the switch and is closed with 1001 at the drain deadline', async () => {
  const ws = new WebSocket(d.url.replace('http', 'ws') + '/ws');
  const closed = new Promise<{ code: number; at: number }>((resolve) => ws.once('close', (code) => resolve({ code, at: Date.now() })));
  ws.on('error', () => {});
  assert.equal(await nextMessage(ws, 5000), 'hello v1');

  const deploy = d.cli(['deploy', 'web', await d.release('v2'), '--json']);
  // Wait for the switch, then check the old tunnel still carries messages.
  let switchedAt = 0;
  for (let i = 0; i < 200 && !switchedAt; i++) {
    const res = await fetch(d.url);
    if ((await res.text()).trim() === 'v2') switchedAt = Date.now();
    else await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(switchedAt, 'traffic switched to v2');
  ws.send('still here');
  assert.equal(await nextMessage(ws, 2000), 'still here');

  const c = await closed;
  const r = await deploy;
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(c.code, 1001, 'closed with a proper close frame: 1001 going away');
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const switchEvent = lines.find((l) => l.type === 'event' && /traffic switched/.test(l.event.message));
  const sinceSwitch = c.at - switchEvent.event.at;
  assert.ok(sinceSwitch >= 2700, `closed ${sinceSwitch} ms after the switch, before the 3 s drain timeout`); // by the drain: see the count below
  assert.match(r.stdout, /1 WebSocket\(s\) closed with 1001/);
});
