// The deployment state machine: which step may follow which, and how a
// deployment interrupted by a daemon crash is resolved. Pure; unit-tested.
//
//   planned → preparing → starting → verifying → shifting → draining → done
//      └──────────┴───────────┴───────────┴─→ aborting → failed       (before the switch)
//                                                      → rolled_back  (traffic moved back)
//   refused: recorded as it is, never started (another deployment held the service)

import { BatonError } from '../core/errors.ts';
import type { DeploymentState } from '../store/types.ts';
export type { DeploymentState };

const next: Record<DeploymentState, readonly DeploymentState[]> = {
  planned: ['preparing', 'aborting'],
  preparing: ['starting', 'aborting'],
  starting: ['verifying', 'aborting'],
  verifying: ['shifting', 'aborting'],
  shifting: ['draining', 'aborting'],
  draining: ['done'],
  aborting: ['failed', 'rolled_back'],
  done: [],
  failed: [],
  rolled_back: [],
  refused: [],
};

export const TERMINAL_STATES: readonly DeploymentState[] = ['done', 'failed', 'rolled_back', 'refused'];

export function isTerminal(s: DeploymentState): boolean {
  return next[s].length === 0;
}

export function canTransition(from: DeploymentState, to: DeploymentState): boolean {
  return next[from].includes(to);
}

export function assertTransition(from: DeploymentState, to: DeploymentState): void {
  if (!canTransition(from, to)) {
    throw new BatonError('INTERNAL', `deployment cannot go from ${from} to ${to}`);
  }
}

/**
 * What a restarted daemon does with a deployment it finds unfinished.
 *
 * The switch is the one moment that matters: the new current release is written
 * to the store *before* the routing snapshot is swapped (state 'shifting').
 * - Before 'shifting' no user saw the new release: the deployment is marked
 *   failed and its new instances are stopped; the recorded current release
 *   keeps serving. Re-running the deploy is safe.
 * - From 'shifting' on, the store already names the new release as current,
 *   and the daemon routes to what the store says: the deployment is completed
 *   (marked done); the old instances become the standby or are stopped.
 * - 'draining' is after the switch even when a later deployment (a rollback
 *   during the drain) has moved traffic again: done.
 * - 'aborting' only happens before the switch in blue/green: marked failed.
 */
export function resolveInterrupted(
  state: DeploymentState,
  currentRelease: string | null,
  toRelease: string,
): 'failed' | 'done' {
  // 'draining' is always after the switch: the service may already have moved on
  // (a rollback during the drain), which does not undo that this deployment switched.
  if (state === 'draining') return 'done';
  if (state === 'shifting') {
    return currentRelease === toRelease ? 'done' : 'failed';
  }
  return 'failed';
}
