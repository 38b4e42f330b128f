// The test harness's ports (test/helpers/ports.ts): a socket held for a daemon
// keeps its port taken until it is handed over, and is named for the daemon
// under the key its listener claims; a program given a number is started
// again on a new port when it says the port was taken, a bounded number of
// times, with a message naming it when it gives up.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { HeldListeners, PortInUse, saysPortInUse, startOnFreePorts } from '../helpers/ports.ts';

function bind(port: number): Promise<NodeJS.ErrnoException | null> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(null)));
  });
}

test('a held port stays taken until this process lets it go; the daemon is told which fd is which listener', async () => {
  const held = new HeldListeners();
  const pub = await held.add('public');
  const tls = await held.add('tls');
  assert.equal((await bind(pub))?.code, 'EADDRINUSE', 'nobody else can take a held port');
  const spawn = held.forSpawn();
  assert.equal(spawn.stdio.length, 2);
  assert.deepEqual(JSON.parse(spawn.env['BATON_LISTEN_FDS']!), { [`public 127.0.0.1:${pub}`]: 3, [`tls 127.0.0.1:${tls}`]: 4 });
  assert.ok(spawn.node.some((f) => f.startsWith('--max-semi-space-size=')), "bin/baton.js's Node flags, read from it");
  held.closeHere();
  assert.equal(await bind(pub), null, 'closed here once handed over');
  assert.deepEqual(held.forSpawn(), { node: [], stdio: [], env: {} }, 'a restart binds the ports itself');
});

test('startOnFreePorts: started again after PortInUse, other errors pass through, and it gives up naming the program', async () => {
  let tries = 0;
  assert.equal(await startOnFreePorts('prog', async () => (++tries < 3 ? Promise.reject(new PortInUse('taken')) : 'up')), 'up');
  assert.equal(tries, 3);
  await assert.rejects(startOnFreePorts('prog', () => Promise.reject(new Error('bad config'))), /^Error: bad config$/);
  tries = 0;
  await assert.rejects(
    startOnFreePorts('pebble', async () => {
      tries++;
      throw new PortInUse('bind: address already in use');
    }, 4),
    /pebble: a port it was given was taken before it bound it, on each of 4 attempts; the last time:\nbind: address already in use/,
  );
  assert.equal(tries, 4);
});

test('the bind failures of sshd, HAProxy, pebble and node read as a port in use', () => {
  assert.ok(saysPortInUse('Bind to port 4022 on 127.0.0.11 failed: Address already in use.'));
  assert.ok(saysPortInUse('[ALERT] Binding [x.cfg:7] for frontend fe: cannot bind socket (Address already in use) for [127.0.0.10:4000]'));
  assert.ok(saysPortInUse('Calling ListenAndServeTLS(): listen tcp 127.0.0.1:14000: bind: address already in use'));
  assert.ok(saysPortInUse('listen EADDRINUSE: address already in use 127.0.0.1:8080'));
  assert.ok(!saysPortInUse('Cannot bind any address.'));
});
