// The daemon's own lifecycle under load: a graceful SIGTERM leaves the
// instances running and a new daemon re-adopts them (same pids); `shutdown
// --stop-instances` finishes what is in flight and leaves no process group.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { request } from 'undici';
import { isGroupAlive } from '../../src/core/proc.ts';
import { createDaemon, waitUntil, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad } from '../helpers/load.ts';

/** A GET the app answers only once `file` exists: in flight for as long as the test needs. */
async function heldGet(d: TestDaemon, file: string): Promise<{ status: number; body: string }> {
  const r = await request(`${d.url}/wait?file=${encodeURIComponent(file)}`);
  return { status: r.statusCode, body: (await r.body.text()).trim() };
}

/** Once the daemon says it is stopping, let the held requests go (they were in flight when it began). */
async function releaseOnceStopping(d: TestDaemon, file: string): Promise<void> {
  await waitUntil('the daemon to log that it is stopping', async () => /"msg":"daemon stopping"/.test(await d.daemonLog()), 15_000, 20);
  await writeFile(file, '');
}

/** Fresh TCP connects to `port` every few ms: when were they refused? */
function probeConnects(port: number): { stop(): Promise<{ refused: number; ok: number; gapMs: number }> } {
  let running = true;
  let refused = 0;
  let ok = 0;
  let first: number | null = null;
  let last: number | null = null;
  const loop = (async () => {
    while (running) {
      await new Promise<void>((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        s.once('connect', () => {
          ok++;
          s.destroy();
          resolve();
        });
        s.once('error', (err: NodeJS.ErrnoException) => {
          if (err.code === 'ECONNREFUSED') {
            refused++;
            const now = performance.now();
            first ??= now;
            last = now;
          }
          resolve();
        });
      });
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { refused, ok, gapMs: first === null || last === null ? 0 : Math.round(last - first) };
    },
  };
}

test('graceful SIGTERM of the daemon under load: in-flight requests finish, a new daemon re-adopts the same pids', async (t) => {
  const d = await createDaemon();
  t.after(() => d.cleanup());
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
  const pids = (await d.status('web')).services[0].instances.map((i: any) => i.pid).sort();
  assert.equal(pids.length, 2);

  const load = startLoad({ url: d.url + '/', concurrency: 4, maxMs: 90_000 });
  await load.waitFor(100, 10_000);
  const probe = probeConnects(d.port);
  const go = path.join(d.dir, 'release-held');
  const slow = heldGet(d, go);
  await waitUntil('the held request to be in flight', async () => (await d.status('web')).services[0].instances.some((i: any) => i.inflight > 0), 5_000, 20);

  const old = d.proc;
  const exited = new Promise((r) => old.once('exit', r));
  old.kill('SIGTERM');
  await releaseOnceStopping(d, go);
  assert.deepEqual(await slow, { status: 200, body: 'v1' }, 'the request in flight at SIGTERM finished');
  await exited;
  for (const pid of pids) assert.ok(isGroupAlive(pid), `instance ${pid} keeps running without a daemon`);

  await d.start();
  const after = (await d.status('web')).services[0];
  assert.deepEqual(after.instances.map((i: any) => i.pid).sort(), pids, 'the same processes, re-adopted');
  await waitUntil('the re-adopted instances to pass health checks', async () => (await d.status('web')).services[0].instances.filter((i: any) => i.healthy).length === 2, 10_000);
  const { refused, gapMs } = await probe.stop();
  const atReady = load.snapshot();
  await load.waitFor(atReady.total + 200, 20_000);
  const result = await load.stop();

  // Between the daemons nobody listens (issue 10 hands the sockets over), and the
  // old daemon closes its idle keep-alive connections as it stops, which races a
  // client's next request (reset / closed). Recorded here, not yet asserted away.
  const kinds = [...new Set(result.clients.flatMap((c) => c.failures).map((e) => e.trim().split(' ')[0]))].sort((a, b) => (a ?? '').localeCompare(b ?? ''));
  t.diagnostic(`refused-connection gap between the daemons: ${gapMs} ms (${refused} refused probe connects); load: ${result.failed} failed of ${result.total}, kinds ${kinds.join(', ')}`);
  assert.equal(result.failed, atReady.failed, 'nothing failed once the new daemon was ready');
  const errorStatuses = Object.keys(result.statuses).filter((code) => Number(code) >= 500);
  assert.deepEqual(errorStatuses, [], 'no daemon answered an error while the instances were re-adopted');
  assert.deepEqual(Object.keys(result.bodies), ['v1']);
});

test('shutdown --stop-instances: requests in flight finish, every instance process group is gone', async (t) => {
  const d = await createDaemon();
  t.after(() => d.cleanup());
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
  const pids = (await d.status('web')).services[0].instances.map((i: any) => i.pid);
  assert.equal(pids.length, 2);

  const go = path.join(d.dir, 'release-held');
  const slow = [heldGet(d, go), heldGet(d, go), heldGet(d, go)];
  await waitUntil('the held requests to be in flight', async () => {
    const s = (await d.status('web')).services[0];
    return s.instances.reduce((n: number, i: any) => n + i.inflight, 0) === 3;
  }, 5_000, 20);
  const exited = new Promise((r) => d.proc.once('exit', r));
  const shutdown = d.cli(['shutdown', '--stop-instances']);
  await releaseOnceStopping(d, go);
  const r = await shutdown;
  assert.equal(r.code, 0, r.stdout + r.stderr);
  for (const s of await Promise.all(slow)) assert.deepEqual(s, { status: 200, body: 'v1' });
  await exited;
  for (const pid of pids) await waitUntil(`instance group ${pid} to be gone`, () => !isGroupAlive(pid), 15_000);
});
