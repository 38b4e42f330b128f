// systemd socket activation (sd_listen_fds): the listening socket belongs to
// the service manager, so kill -9 of the daemon and its restart leave the
// kernel accepting: clients see added latency, not refused connections.
// systemd itself does not run here (not PID 1); a small holder does what it
// does: binds the socket, starts the daemon with it as fd 3 and LISTEN_PID /
// LISTEN_FDS / LISTEN_FDNAMES set for that very process, restarts it when it dies.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDaemon, waitUntil, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad } from '../helpers/load.ts';
import { listenerKey, socketUnitName } from '../../src/core/listen-fds.ts';
import { fdOf } from '../helpers/ports.ts';
import net from 'node:net';

const BATON = fileURLToPath(new URL('../../bin/baton.js', import.meta.url));

// Keep the listening socket it is handed as fd 3 (bound by the test: no port
// picked and bound later), run the daemon with it (restarted up to 5 times, as Restart=always would).
const HOLDER = `
import os, socket, subprocess, sys, time
name, log, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
s = socket.socket(fileno=3)
os.set_inheritable(3, True)
out = open(log, "ab")
for i in range(5):
    p = subprocess.Popen(["/bin/sh", "-c", 'export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES="$0"; exec "$@"', name] + cmd, pass_fds=(3,), stdout=out, stderr=out)
    print(p.pid, flush=True)
    p.wait()
    time.sleep(0.2)
`;

let d: TestDaemon;
let holder: ChildProcess | null = null;
const started: number[] = [];
before(async () => {
  // The service manager's socket: bound here, handed to the holder.
  const socket = net.createServer();
  await new Promise<void>((resolve) => socket.listen({ host: '127.0.0.1', port: 0, backlog: 511 }, resolve));
  d = await createDaemon({ start: false, port: (socket.address() as net.AddressInfo).port });
  const name = socketUnitName(listenerKey('public', '127.0.0.1', d.port));
  holder = spawn('/usr/bin/python3', ['-c', HOLDER, name, path.join(d.dir, 'daemon.log'), process.execPath, BATON, 'daemon', '--config', d.configFile], {
    cwd: d.dir,
    detached: true,
    stdio: ['ignore', 'pipe', 'inherit', fdOf(socket)],
  });
  socket.close();
  holder.stdout!.on('data', (c) => {
    for (const l of String(c).split('\n')) if (/^\d+$/.test(l.trim())) started.push(Number(l.trim()));
  });
  await waitUntil('the socket-activated daemon to answer', async () => (await d.cli(['status', '--json'], 10_000)).code === 0, 30_000, 200);
});
after(async () => {
  await d?.cli(['shutdown', '--stop-instances'], 10_000).catch(() => {});
  try {
    if (holder?.pid) process.kill(-holder.pid, 'SIGKILL');
  } catch {
    // gone
  }
  await d?.cleanup();
});

test('kill -9 of a socket-activated daemon: connections wait for the restarted one, none is refused', async (t) => {
  const r = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const first = (await d.status()).daemon.pid;
  assert.equal(first, started[0]!, 'the daemon is the process the holder started (LISTEN_PID)');
  const load = startLoad({ url: d.url + '/', concurrency: 3, keepAlive: false, maxMs: 120_000 });
  try {
    await load.waitFor(100, 30_000);
    process.kill(first, 'SIGKILL');
    await waitUntil('the restarted daemon to answer', async () => {
      const s = await d.status().catch(() => null);
      return s !== null && s.daemon.pid !== first;
    }, 60_000, 200);
    const n = load.snapshot().total;
    await load.waitFor(n + 100, 30_000);
  } finally {
    const res = await load.stop();
    t.diagnostic(`requests ${res.total}, failed ${res.failed}: ${res.errors.join('; ')}`);
    const refused = res.errors.filter((e) => e.includes('ECONNREFUSED'));
    assert.deepEqual(refused, [], 'no connection refused while the daemon was down');
    // Only what the killed daemon had accepted and not answered can fail: one request per client at most.
    assert.ok(res.failed <= 3, `failed ${res.failed}: ${res.errors.join('; ')}`);
    assert.deepEqual(Object.keys(res.bodies), ['v1']);
  }
});
