// WebSockets at scale: when a release drains, the WebSockets still open are
// closed (1001) one at a time over the last `ws_close_spread` of the drain,
// oldest first, not all at the deadline; `status` says how many are left and
// when the last will be closed.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createDaemon, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';

const N = 6;
let d: TestDaemon;
before(async () => {
  d = await createDaemon({ services: serviceYaml({ instances: 1 }).replace('drain_timeout: 5s', 'drain_timeout: 6s\n    ws_close_spread: 4s') });
  const r = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
});
after(async () => {
  await d?.cleanup();
});

function open(): Promise<{ ws: WebSocket; closed: Promise<{ code: number; at: number }> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(d.url.replace('http', 'ws') + '/ws');
    const closed = new Promise<{ code: number; at: number }>((r) => ws.once('close', (code) => r({ code, at: performance.now() })));
    ws.on('error', () => {});
    const t = setTimeout(() => reject(new Error('no WebSocket hello within 5 s')), 5000);
    ws.once('message', (m) => {
      clearTimeout(t);
      assert.equal(String(m), 'hello v1');
      resolve({ ws, closed });
    });
  });
}

test(`${N} WebSockets of a draining release are closed one at a time over the window, oldest first, with 1001`, async () => {
  const sockets = [];
  for (let i = 0; i < N; i++) sockets.push(await open());
  const switched = performance.now();
  const deploy = d.cli(['deploy', 'web', await d.release('v2'), '--until', 'switched']);
  const r = await deploy;
  assert.equal(r.code, 0, r.stdout + r.stderr);

  // While it drains, status counts them and says when the last is closed.
  const s = await d.status('web');
  const dr = s.services[0].draining[0];
  assert.notEqual(dr.release, s.services[0].currentRelease, "the release that drains is the one switched away from");
  assert.equal(dr.websockets, N);
  assert.equal(dr.websocketsCloseFrom, dr.deadline - 4000);
  const text = await d.cli(['status', 'web']);
  assert.match(text.stdout, new RegExp(`${N} WebSocket\\(s\\) left: closed \\(1001\\) one at a time (from|now).*the last at \\d\\d:\\d\\d:\\d\\d UTC`));

  const closes = await Promise.all(sockets.map((x) => x.closed));
  for (const c of closes) assert.equal(c.code, 1001);
  // Oldest first, each one after the one before.
  for (let i = 1; i < N; i++) assert.ok(closes[i]!.at >= closes[i - 1]!.at, `socket ${i} closed before socket ${i - 1}`);
  // Not all at once: the closes are spread (4 s window, 6 sockets: ~0.67 s apart, ~3.3 s from first to last).
  const spread = closes[N - 1]!.at - closes[0]!.at;
  assert.ok(spread >= 1500, `closes spread over ${Math.round(spread)} ms only: ${closes.map((c) => Math.round(c.at - switched)).join(', ')} ms after the switch`);
  // None before its window: the first close comes after the drain's first 2 s (6 s drain, 4 s spread).
  assert.ok(closes[0]!.at - switched >= 2000, `first close ${Math.round(closes[0]!.at - switched)} ms after the switch`);
  await waitUntil('the drain to end', async () => (await d.status('web')).services[0].draining.length === 0, 20_000);
});
