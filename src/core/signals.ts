// Signalling process groups, and stopping a group with a bounded wait. Signals
// go to the whole group so a `sh -c` wrapper cannot swallow them.

import { constants } from 'node:os';
import { BatonError } from './errors.ts';
import { readProcStat, isDeadState, isGroupAlive, isSameProcessAlive } from './proc.ts';

/** Poll period while waiting for a process to go away (only while someone awaits). */
const GONE_POLL_MS = 50;
/** How long a SIGKILLed group may take to disappear before we call it stuck (e.g. in uninterruptible I/O). */
export const KILL_WAIT_MS = 10_000;

let ownGroup: number | null = null;
function ownProcessGroup(): number {
  ownGroup ??= readProcStat(process.pid)?.pgrp ?? process.pid;
  return ownGroup;
}

/**
 * Send `signal` to process group `pgid`. Returns false when the group no longer
 * exists. Refuses the groups that would hit init or the daemon itself.
 */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  if (!Number.isInteger(pgid) || pgid <= 1 || pgid === ownProcessGroup()) {
    throw new BatonError('INTERNAL', `refusing to signal process group ${pgid}`);
  }
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/**
 * Wait until `isGone()` or `timeoutMs` passes; true if gone. `wake`, when
 * given, re-checks early (e.g. on a child's exit event). The poll timer stays
 * referenced: someone is awaiting this.
 */
export async function waitUntil(isGone: () => boolean, timeoutMs: number, wake?: Promise<unknown>): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!isGone()) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    let timer: NodeJS.Timeout | undefined;
    const tick = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.min(GONE_POLL_MS, left))));
    await (wake ? Promise.race([tick, wake]) : tick);
    clearTimeout(timer);
  }
  return true;
}

/**
 * Stop a stray instance found after a restart (not our child, maybe not even
 * adopted): `signal` to its group, SIGKILL after `timeoutMs`, resolve when the
 * group is gone. Does nothing if `pid` is no longer the process that started at
 * `startTime` (the pid may have been reused).
 */
export async function killStrayGroup(pid: number, startTime: string, signal: string, timeoutMs: number): Promise<void> {
  const sig = toSignal(signal);
  const stat = readProcStat(pid);
  if (stat === null || stat.startTime !== startTime || isDeadState(stat.state)) return;
  // Instances are started with setsid, so the group is the pid's own; if it is
  // not, signal only the process rather than someone else's group.
  const ownsGroup = stat.pgrp === pid;
  const send = (sig: NodeJS.Signals): void => {
    if (ownsGroup) signalGroup(pid, sig);
    else {
      try {
        process.kill(pid, sig);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
  };
  const gone = (): boolean => !isSameProcessAlive(pid, startTime) && (!ownsGroup || !isGroupAlive(pid));
  send(sig);
  if (await waitUntil(gone, timeoutMs)) return;
  send('SIGKILL');
  if (!(await waitUntil(gone, KILL_WAIT_MS))) {
    throw new BatonError('INTERNAL', `process ${pid} still running ${KILL_WAIT_MS} ms after SIGKILL`);
  }
}

/** Validate a signal name coming from config or a caller. */
export function toSignal(name: string): NodeJS.Signals {
  if (!Object.hasOwn(constants.signals, name)) throw new BatonError('BAD_REQUEST', `unknown signal ${name}`);
  return name as NodeJS.Signals;
}
