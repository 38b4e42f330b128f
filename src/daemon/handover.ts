// The new daemon's side of `baton upgrade` (the old side is upgrade.ts): know
// that it was started as a successor, tell its predecessor over the IPC
// channel whether it came up, and tell systemd which process is the service now.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { BatonError, errorMessage, isBatonError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { CounterTotals } from '../proxy/types.ts';

/** Set by the old daemon in its successor's environment: the old daemon's pid. */
export const SUCCESSOR_ENV = 'BATON_SUCCESSOR_OF';
/**
 * Test hook (documented in docs/ARCHITECTURE.md): when this names a file that
 * exists, a successor exits with status 70 after it re-adopted the instances
 * and before it listens — the injected crash of the upgrade tests.
 */
export const FAULT_ENV = 'BATON_TEST_UPGRADE_FAULT';
export const FAULT_EXIT_STATUS = 70;

/** What a successor tells its predecessor over the IPC channel. */
export type SuccessorMessage =
  | { type: 'ready'; pid: number }
  | { type: 'failed'; code: string; message: string; details: string[] };

let predecessor: number | null | undefined;

/** The old daemon's pid when this process was started by `baton upgrade`, else null (read once). */
export function predecessorPid(): number | null {
  if (predecessor !== undefined) return predecessor;
  const raw = process.env[SUCCESSOR_ENV];
  // Not for the instances this daemon starts, nor for its own successor.
  delete process.env[SUCCESSOR_ENV];
  const pid = raw === undefined ? NaN : Number(raw);
  predecessor = Number.isInteger(pid) && pid > 1 && typeof process.send === 'function' ? pid : null;
  return predecessor;
}

/** The injected crash of the tests (see FAULT_ENV); a no-op unless asked for. */
export function injectedFault(logger: Logger): void {
  const file = process.env[FAULT_ENV];
  if (predecessorPid() === null || file === undefined || !existsSync(file)) return;
  logger.error('test hook: the new daemon exits before listening', { hook: FAULT_ENV, file });
  process.exit(FAULT_EXIT_STATUS);
}

function send(msg: SuccessorMessage): Promise<void> {
  return new Promise((resolve) => {
    if (typeof process.send !== 'function' || !process.connected) return resolve();
    process.send(msg, undefined, {}, () => resolve());
  });
}

/**
 * The daemon is up (store open, instances re-adopted, listening, control
 * socket in place): tell the predecessor and systemd. The predecessor sends
 * its proxy counters once it has drained (`addTotals`: the totals go on from
 * them), then closes the channel.
 */
export async function reportReady(logger: Logger, addTotals: (t: CounterTotals) => void): Promise<void> {
  if (predecessorPid() !== null) {
    process.on('message', (m: { type?: string; totals?: CounterTotals }) => {
      if (m?.type !== 'counters' || m.totals === undefined) return;
      try {
        addTotals(m.totals);
        logger.info('upgrade: the previous daemon\'s counters added to this one\'s', { from: predecessorPid() });
      } catch (err) {
        logger.warn('upgrade: the previous daemon\'s counters could not be added', { error: errorMessage(err) });
      }
      process.disconnect?.();
    });
    await send({ type: 'ready', pid: process.pid });
  }
  // --pid: the message says MAINPID=<this pid> (and is sent with its credentials where allowed).
  await notifySystemd(['READY=1'], logger);
}

/** Start-up failed: tell the predecessor why (it keeps serving and says so). */
export async function reportFailed(err: unknown): Promise<void> {
  if (predecessorPid() === null) return;
  const e = isBatonError(err) ? err : new BatonError('INTERNAL', errorMessage(err));
  await send({ type: 'failed', code: e.code, message: e.message, details: e.details });
}

/**
 * sd_notify(3) through systemd-notify (Node has no Unix datagram sockets).
 * With NotifyAccess=all (the unit `baton systemd` writes) systemd takes
 * MAINPID= from any process of the service.
 */
export function notifySystemd(fields: string[], logger: Logger): Promise<void> {
  if (!process.env['NOTIFY_SOCKET']) return Promise.resolve();
  return new Promise((resolve) => {
    const c = spawn('systemd-notify', [`--pid=${process.pid}`, ...fields], { stdio: 'ignore' });
    c.once('error', (err) => {
      logger.error('cannot notify systemd (is systemd-notify installed?)', { error: err.message, fields });
      resolve();
    });
    c.once('exit', (code) => {
      if (code !== 0) logger.warn('systemd-notify failed', { code, fields });
      resolve();
    });
  });
}
