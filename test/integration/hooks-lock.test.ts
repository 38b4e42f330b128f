// The cross-process lock: waiting while held, stale takeover, timeouts naming
// the holder, serialisation within a process and between processes, and
// release() leaving someone else's lock alone.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireLock, type LockHolder } from '../../src/hooks/index.ts';
import { isBatonError } from '../../src/core/errors.ts';
import { readProcStat } from '../../src/core/proc.ts';
import { settlesWithin, withTimeout as within } from '../helpers/timeouts.ts';

const HOOKS_URL = new URL('../../src/hooks/index.ts', import.meta.url).href;

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-lock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Another process using the lock. Commands on stdin: "acquire <timeoutMs>",
 * "release", "exit" (without releasing). It answers one line per command.
 */
class Peer {
  readonly child: ChildProcess;
  readonly #lines: string[] = [];
  #wake: (() => void) | null = null;

  constructor(t: TestContext, lockPath: string, purpose: string) {
    const script = `
      import { acquireLock } from ${JSON.stringify(HOOKS_URL)};
      import { createInterface } from 'node:readline';
      let lock = null;
      for await (const line of createInterface({ input: process.stdin })) {
        const [cmd, arg] = line.split(' ');
        try {
          if (cmd === 'acquire') {
            // "acquire N announce": say "waiting" when the lock is found held.
            const onWait = line.endsWith(' announce') ? () => console.log('waiting') : undefined;
            lock = await acquireLock(process.env.LOCK_PATH, { purpose: process.env.PURPOSE, timeoutMs: Number(arg), pollMs: 20, onWait });
            console.log('acquired ' + lock.tookOverStaleFrom);
          } else if (cmd === 'release') {
            await lock.release();
            console.log('released');
          } else if (cmd === 'exit') {
            process.exit(0);
          }
        } catch (err) {
          console.log('error ' + err.code + ' ' + err.message);
        }
      }`;
    this.child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, LOCK_PATH: lockPath, PURPOSE: purpose },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    t.after(() => {
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.#lines.push(line);
      this.#wake?.();
    });
  }

  /** Lines printed and not yet read. */
  get buffered(): number {
    return this.#lines.length;
  }

  get pid(): number {
    return this.child.pid!;
  }

  send(cmd: string): void {
    this.child.stdin!.write(cmd + '\n');
  }

  /** The next line it prints. */
  async next(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (this.#lines.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`peer ${this.pid} said nothing within ${timeoutMs} ms`);
      await new Promise<void>((res) => {
        const timer = setTimeout(res, left);
        this.#wake = () => {
          clearTimeout(timer);
          res();
        };
      });
      this.#wake = null;
    }
    return this.#lines.shift()!;
  }

  async exited(timeoutMs = 10_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    await within(new Promise((res) => this.child.once('exit', res)), timeoutMs, `peer ${this.pid} exit`);
  }
}

async function holderOf(path: string): Promise<LockHolder> {
  return JSON.parse(await readFile(path, 'utf8')) as LockHolder;
}

test('the lock file names its holder; release removes it; no temporary files are left', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'sub', 'migrate.lock');
  const lock = await acquireLock(path, { purpose: 'migrate web r1', timeoutMs: 1000 });
  assert.equal(lock.tookOverStaleFrom, null);
  const h = await holderOf(path);
  assert.equal(h.pid, process.pid);
  assert.equal(h.startTime, readProcStat(process.pid)?.startTime);
  assert.equal(h.purpose, 'migrate web r1');
  assert.ok(Math.abs(Date.parse(h.acquiredAt) - Date.now()) < 10_000);
  assert.deepEqual(await readdir(join(dir, 'sub')), ['migrate.lock']);
  await lock.release();
  await lock.release(); // idempotent
  assert.deepEqual(await readdir(join(dir, 'sub')), []);
});

test('in one process, a second acquirer waits until the first releases (FIFO)', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'x.lock');
  const first = await acquireLock(path, { purpose: 'first', timeoutMs: 1000 });
  const order: string[] = [];
  const second = acquireLock(path, { purpose: 'second', timeoutMs: 5000 }).then((l) => (order.push('second'), l));
  const third = acquireLock(path, { purpose: 'third', timeoutMs: 5000 }).then((l) => (order.push('third'), l));
  assert.equal(await settlesWithin(second, 200), false, 'second waits');
  await first.release();
  const l2 = await within(second, 1000, 'second acquires');
  assert.equal((await holderOf(path)).purpose, 'second');
  assert.equal(await settlesWithin(third, 100), false, 'third still waits');
  await l2.release();
  const l3 = await within(third, 1000, 'third acquires');
  await l3.release();
  assert.deepEqual(order, ['second', 'third']);

  // Mutual exclusion under contention.
  let inside = 0;
  let maxInside = 0;
  await within(
    Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const l = await acquireLock(path, { purpose: `n${i}`, timeoutMs: 5000 });
        inside++;
        maxInside = Math.max(maxInside, inside);
        await new Promise((r) => setTimeout(r, 2));
        inside--;
        await l.release();
      }),
    ),
    6000,
    'contention',
  );
  assert.equal(maxInside, 1);
});

test('in one process, LOCK_TIMEOUT names the holder; a waiter that gave up does not block the next one', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'x.lock');
  const first = await acquireLock(path, { purpose: 'migrate web r1', timeoutMs: 1000 });
  await assert.rejects(acquireLock(path, { purpose: 'migrate web r2', timeoutMs: 150 }), (err: unknown) => {
    assert.ok(isBatonError(err));
    assert.equal(err.code, 'LOCK_TIMEOUT');
    assert.match(err.message, new RegExp(`held by pid ${process.pid} \\(migrate web r1`));
    return true;
  });
  const next = acquireLock(path, { purpose: 'r3', timeoutMs: 2000 });
  await first.release();
  const l = await within(next, 1000, 'next after a timed-out waiter');
  await l.release();
});

test('another process: the second acquirer waits until release; LOCK_TIMEOUT names the holder pid and purpose', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'x.lock');
  const peer = new Peer(t, path, 'deploy web from push');
  peer.send('acquire 5000');
  assert.equal(await peer.next(), 'acquired null');

  await assert.rejects(acquireLock(path, { purpose: 'deploy web from cli', timeoutMs: 300, pollMs: 20 }), (err: unknown) => {
    assert.ok(isBatonError(err));
    assert.equal(err.code, 'LOCK_TIMEOUT');
    assert.match(err.message, new RegExp(`held by pid ${peer.pid} \\(deploy web from push, since `));
    assert.match(err.message, /deploy web from cli/);
    return true;
  });

  const mine = acquireLock(path, { purpose: 'deploy web from cli', timeoutMs: 5000, pollMs: 20 });
  assert.equal(await settlesWithin(mine, 300), false, 'waits while the other process holds it');
  peer.send('release');
  assert.equal(await peer.next(), 'released');
  const lock = await within(mine, 2000, 'acquire after the peer released');
  assert.equal(lock.tookOverStaleFrom, null);
  assert.equal((await holderOf(path)).pid, process.pid);

  // And the other way round: the peer waits for us.
  peer.send('acquire 5000 announce');
  assert.equal(await peer.next(), 'waiting');
  await lock.release();
  assert.equal(await peer.next(), 'acquired null');
  peer.send('exit');
  await peer.exited();
});

test('a stale lock (its holder exited without releasing) is taken over and reported', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'x.lock');
  const peer = new Peer(t, path, 'migrate web r7');
  peer.send('acquire 5000');
  assert.equal(await peer.next(), 'acquired null');
  const deadPid = peer.pid;
  peer.send('exit');
  await peer.exited();
  assert.equal((await holderOf(path)).pid, deadPid, 'the file is still there');

  const lock = await within(acquireLock(path, { purpose: 'migrate web r8', timeoutMs: 2000 }), 3000, 'takeover');
  assert.equal(lock.tookOverStaleFrom, deadPid);
  assert.equal(lock.staleHolder?.purpose, 'migrate web r7');
  assert.equal((await holderOf(path)).pid, process.pid);
  await lock.release();
  assert.deepEqual(await readdir(dir), []);
});

test('a lock whose pid is alive but started at another time (pid reused) is stale; an unreadable old file too', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'x.lock');
  const live = process.ppid; // alive, but not the process that wrote this file
  await writeFile(path, JSON.stringify({ pid: live, startTime: '1', purpose: 'old', acquiredAt: '2020-01-01T00:00:00Z', token: 't' }));
  const lock = await acquireLock(path, { purpose: 'new', timeoutMs: 1000 });
  assert.equal(lock.tookOverStaleFrom, live);
  await lock.release();

  // The same file with the real start time is a live holder.
  await writeFile(path, JSON.stringify({ pid: live, startTime: readProcStat(live)?.startTime, purpose: 'parent', acquiredAt: 'x', token: 't' }));
  await assert.rejects(acquireLock(path, { purpose: 'new', timeoutMs: 100 }), /LOCK|held by pid/);
  await rm(path);

  // Garbage, modified long ago: taken over (pid unknown: 0).
  await writeFile(path, 'not json');
  const { utimes } = await import('node:fs/promises');
  await utimes(path, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
  const l2 = await acquireLock(path, { purpose: 'new', timeoutMs: 1000 });
  assert.equal(l2.tookOverStaleFrom, 0);
  assert.equal(l2.staleHolder, null);
  await l2.release();
});

test('release() does not delete a lock that is no longer ours', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'x.lock');
  const lock = await acquireLock(path, { purpose: 'mine', timeoutMs: 1000 });
  // Someone else's lock replaced ours (e.g. an operator removed it and another deploy took it).
  const theirs = JSON.stringify({ pid: process.ppid, startTime: readProcStat(process.ppid)?.startTime, purpose: 'theirs', acquiredAt: 'x', token: 'other' });
  await rm(path);
  await writeFile(path, theirs);
  await lock.release();
  assert.equal(await readFile(path, 'utf8'), theirs);
});

test('several processes racing for a stale lock: one takes it over, all get it in turn, never two at once', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'x.lock');
  await writeFile(path, JSON.stringify({ pid: process.ppid, startTime: '1', purpose: 'crashed', acquiredAt: 'x', token: 't' }));
  const peers = Array.from({ length: 4 }, (_, i) => new Peer(t, path, `peer ${i}`));
  for (const p of peers) p.send('acquire 10000');
  // Whoever has it releases it after a moment; the lock file must name exactly one live holder each time.
  const results: string[] = [];
  const pending = new Set(peers);
  const deadline = Date.now() + 15_000;
  while (pending.size > 0) {
    assert.ok(Date.now() < deadline, 'all peers got the lock in time');
    const holder = await holderOf(path).catch(() => null);
    const owner = holder === null ? undefined : peers.find((p) => p.pid === holder.pid);
    if (owner === undefined || !pending.has(owner)) {
      await new Promise((r) => setTimeout(r, 20));
      continue;
    }
    const said = await owner.next();
    assert.match(said, /^acquired /);
    results.push(said);
    // Nobody else reports having it while this one holds it.
    await new Promise((r) => setTimeout(r, 60));
    assert.equal((await holderOf(path)).pid, owner.pid);
    for (const p of peers) if (p !== owner) assert.equal(p.buffered, 0, `peer ${p.pid} got the lock while ${owner.pid} held it`);
    owner.send('release');
    assert.equal(await owner.next(), 'released');
    pending.delete(owner);
  }
  assert.equal(results.filter((r) => r === `acquired ${process.ppid}`).length, 1, `one takeover: ${results.join(', ')}`);
  assert.equal(results.filter((r) => r === 'acquired null').length, 3);
  for (const p of peers) p.send('exit');
  await Promise.all(peers.map((p) => p.exited()));
  assert.deepEqual(await readdir(dir), [], 'no lock, guard or temporary file left');
});
