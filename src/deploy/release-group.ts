// The instances of one release of one service, and the role they play. A role
// changes only along the arrows below (as a deployment's state does, see
// states.ts): anything else is a bug and throws, it is never coerced.

import { BatonError } from '../core/errors.ts';
import type { Instance } from '../supervisor/index.ts';
import { Backoff } from '../supervisor/index.ts';

/**
 * - incoming: started by a deployment, not routed yet, not replaced if they crash
 *   (the deployment fails instead);
 * - current: routed; crashed or unhealthy instances are replaced, with backoff;
 * - canary: routed for a share of the visitors during a canary rollout; replaced like current;
 * - draining: just left the routing snapshot; in-flight requests and WebSockets
 *   finish (up to the drain timeout). Still running, so a rollback can route to it again;
 * - standby: the previous release kept running, unrouted, for an instant rollback;
 * - retiring: being drained and stopped for good.
 */
export type GroupRole = 'incoming' | 'current' | 'canary' | 'draining' | 'standby' | 'retiring';

const NEXT: Record<GroupRole, readonly GroupRole[]> = {
  incoming: ['current', 'canary', 'retiring'],
  canary: ['current', 'retiring'],
  current: ['draining', 'retiring'],
  draining: ['current', 'standby', 'retiring'],
  standby: ['current', 'retiring'],
  retiring: [],
};

export function canMove(from: GroupRole, to: GroupRole): boolean {
  return NEXT[from].includes(to);
}

/** Roles whose instances are kept at the configured count (replaced when they crash). */
export function isKeptAtSize(role: GroupRole): boolean {
  return role === 'current' || role === 'canary' || role === 'standby';
}

export class ReleaseGroup {
  readonly release: string;
  readonly dir: string;
  #role: GroupRole;
  readonly instances = new Map<string, Instance>();
  readonly backoff = new Backoff({ baseMs: 500, maxMs: 30_000, resetAfterMs: 60_000 });
  /** Replacements scheduled but not started yet (so a crash storm does not over-spawn). */
  pendingReplacements = 0;

  constructor(release: string, dir: string, role: GroupRole) {
    this.release = release;
    this.dir = dir;
    this.#role = role;
  }

  get role(): GroupRole {
    return this.#role;
  }

  /** Change role along an allowed arrow; anything else is a bug in the caller. */
  moveTo(to: GroupRole): void {
    if (!canMove(this.#role, to)) {
      throw new BatonError('INTERNAL', `release group ${this.release} cannot go from ${this.#role} to ${to}`);
    }
    this.#role = to;
  }

  list(): Instance[] {
    return [...this.instances.values()];
  }

  healthy(): Instance[] {
    return this.list().filter((i) => i.healthy);
  }

  /** Every instance is running and passed its health check (and there is at least one). */
  allHealthy(): boolean {
    return this.instances.size > 0 && this.list().every((i) => i.healthy);
  }
}
