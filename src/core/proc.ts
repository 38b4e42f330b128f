// Reading /proc: the one source of truth about processes that are not (or no
// longer) our children, e.g. instances re-adopted after a daemon restart.

import { readFileSync, readdirSync } from 'node:fs';

export interface ProcStat {
  /** One letter: R, S, D, Z (zombie), X (dead), T, ... */
  state: string;
  ppid: number;
  pgrp: number;
  /** Field 22: clock ticks since boot. Kept as a string: it is an identity, not a number to compute with. */
  startTime: string;
}

/**
 * Parse the text of /proc/PID/stat. The comm field (2) is in parentheses and may
 * itself contain spaces and parentheses, so the fields after it start after the
 * LAST ')'. Returns null for text that is not a stat line.
 */
export function parseProcStat(text: string): ProcStat | null {
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  // Fields 3.. ; field n is at index n - 3.
  const rest = text.slice(close + 1).trim().split(/\s+/);
  const state = rest[0];
  const ppid = Number(rest[1]);
  const pgrp = Number(rest[2]);
  const startTime = rest[19];
  if (!state || startTime === undefined || !/^\d+$/.test(startTime)) return null;
  if (!Number.isInteger(ppid) || !Number.isInteger(pgrp)) return null;
  return { state, ppid, pgrp, startTime };
}

/** The stat of a live or zombie process, or null when there is no such pid. */
export function readProcStat(pid: number): ProcStat | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  return parseProcStat(text);
}

/** Zombies (Z) and dead tasks (X) have exited; only their parent has not reaped them yet. */
export function isDeadState(state: string): boolean {
  return state === 'Z' || state === 'X';
}

/** True when `pid` is still the process that started at `startTime` and has not exited. */
export function isSameProcessAlive(pid: number, startTime: string): boolean {
  const stat = readProcStat(pid);
  return stat !== null && stat.startTime === startTime && !isDeadState(stat.state);
}

/**
 * True when some process of group `pgid` is still running (zombies do not
 * count). Scans /proc because kill(-pgid, 0) also succeeds for zombies, which
 * PID 1 on these machines reaps slowly.
 */
export function isGroupAlive(pgid: number): boolean {
  if (!Number.isInteger(pgid) || pgid <= 1) return false;
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    // EPERM means it exists but is not ours: still alive.
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return true;
  }
  for (const name of entries) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const stat = readProcStat(Number(name));
    if (stat !== null && stat.pgrp === pgid && !isDeadState(stat.state)) return true;
  }
  return false;
}

let bootTimeMs: number | null = null;
const ticksPerSecond = 100; // USER_HZ: 100 on every Linux build baton targets

/** Epoch ms at which a process with this /proc start time started (approximate to 10 ms), or null if unknown. */
export function startTimeToEpochMs(startTime: string): number | null {
  if (bootTimeMs === null) {
    try {
      const m = /^btime\s+(\d+)$/m.exec(readFileSync('/proc/stat', 'latin1'));
      if (!m?.[1]) return null;
      bootTimeMs = Number(m[1]) * 1000;
    } catch {
      return null;
    }
  }
  const ticks = Number(startTime);
  if (!Number.isFinite(ticks)) return null;
  return bootTimeMs + Math.round((ticks * 1000) / ticksPerSecond);
}
