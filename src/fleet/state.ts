// A rollout written down: which hosts are where, so that a paused, crashed or
// interrupted CLI (or another terminal) can resume or abort it. One file per
// fleet and service under the operator's state directory
// ($XDG_STATE_HOME/baton/fleet, default ~/.local/state/baton/fleet), written
// whole (temporary file, then rename) at every change.

import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BatonError } from '../core/errors.ts';
import type { FleetAnalysis } from './config.ts';
import type { Batch } from './plan.ts';

/** A host's place in the rollout, as printed (one line per change). */
export type HostPhase =
  | 'queued' | 'shipping' | 'shipped' | 'draining' | 'building' | 'starting' | 'switching'
  | 'switched' | 'baking' | 'done' | 'failed' | 'reverting' | 'reverted' | 'untouched';

export interface HostRecord {
  phase: HostPhase;
  /** The release serving before the switch (the rollback target), and after. */
  from: string | null;
  to: string | null;
  history: { phase: HostPhase; at: number }[];
  error: string | null;
  /** Took the host out of the balancer before switching it. */
  drained: boolean;
}

export type RolloutStatus = 'running' | 'paused' | 'failed' | 'done' | 'aborted' | 'reverted';

export interface RolloutRecord {
  id: string;
  fleet: string;
  fleetFile: string;
  service: string;
  artifact: { name: string; sha256: string; bytes: number; source: string };
  operator: string;
  createdAt: number;
  status: RolloutStatus;
  batches: Batch[];
  options: { bakeMs: number; revert: boolean; drain: boolean; maxFailures: number; healthyDeadlineMs: number; analysis?: FleetAnalysis | null };
  /** The host that runs the migrations (the first one), and whether it has. */
  migrationHost: string;
  migrated: boolean;
  hosts: Record<string, HostRecord>;
  phases: Record<string, number>;
  error: string | null;
  revertMs: number | null;
}

export function stateDir(): string {
  const base = process.env['XDG_STATE_HOME'] || path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'baton', 'fleet');
}

export function stateFile(fleet: string, service: string): string {
  return path.join(stateDir(), `${fleet}--${service}.json`);
}

export function readRollout(fleet: string, service: string): RolloutRecord | null {
  const f = stateFile(fleet, service);
  if (!existsSync(f)) return null;
  try {
    return JSON.parse(readFileSync(f, 'utf8')) as RolloutRecord;
  } catch (err) {
    throw new BatonError('FLEET_NO_ROLLOUT', `${f}: the rollout record is unreadable (${(err as Error).message}); move it aside to start afresh`);
  }
}

export async function writeRollout(r: RolloutRecord): Promise<void> {
  const f = stateFile(r.fleet, r.service);
  await mkdir(path.dirname(f), { recursive: true });
  await writeFile(`${f}.tmp`, JSON.stringify(r, null, 2) + '\n');
  await rename(`${f}.tmp`, f);
}

export function isFinished(s: RolloutStatus): boolean {
  return s === 'done' || s === 'aborted' || s === 'reverted' || s === 'failed';
}
