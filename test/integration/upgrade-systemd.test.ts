// Under systemd (Type=notify, NotifyAccess=all) the daemon says READY=1 (with
// MAINPID, its own pid) once it serves, and after `baton upgrade` the new daemon says MAINPID=<its pid>:
// checked with a real datagram socket standing in for systemd's
// $NOTIFY_SOCKET (Debian's Python reads it; Node has no Unix datagram
// sockets) and the real systemd-notify.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createDaemon, isGone, waitUntil, type TestDaemon } from '../helpers/daemon.ts';

let d: TestDaemon;
let listener: ChildProcess;
let dir = '';
const messages: string[] = [];

const RECEIVER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    data = s.recv(4096)
    print(data.decode().replace("\\n", " "), flush=True)
`;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'baton-notify-'));
  const sock = path.join(dir, 'notify.sock');
  listener = spawn('/usr/bin/python3', ['-c', RECEIVER, sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  let buf = '';
  listener.stdout!.on('data', (c) => {
    buf += String(c);
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      messages.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
  await waitUntil('the stand-in notify socket to be bound', () => messages.includes('bound'), 10_000);
  process.env['NOTIFY_SOCKET'] = sock;
  d = await createDaemon();
  delete process.env['NOTIFY_SOCKET'];
});
after(async () => {
  await d?.cleanup();
  listener?.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

test('READY=1 at start; after baton upgrade the new daemon sends MAINPID=<its pid> and READY=1', async () => {
  const first = (await d.status()).daemon.pid;
  await waitUntil('READY=1 from the daemon', () => messages.some((m) => m.trim() === `MAINPID=${first} READY=1`), 10_000);
  const r = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const u = await d.cli(['upgrade', '--json'], 90_000);
  assert.equal(u.code, 0, u.stdout + u.stderr);
  const { oldPid, newPid } = JSON.parse(u.stdout);
  await waitUntil(`MAINPID=${newPid} from the new daemon`, () => messages.some((m) => m.trim() === `MAINPID=${newPid} READY=1`), 10_000);
  await waitUntil('the old daemon to exit', () => isGone(oldPid), 30_000);
  assert.equal((await (await fetch(d.url)).text()).trim(), 'v1');
});
