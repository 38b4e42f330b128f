// The instances of one release of one service, and the role they play.

import type { Instance } from '../supervisor/index.ts';
import { Backoff } from '../supervisor/index.ts';

/**
 * - incoming: started by a deployment, not routed yet, not replaced if they crash
 *   (the deployment fails instead);
 * - current: routed; crashed or unhealthy instances are replaced, with backoff;
 * - canary: routed for a share of the visitors during a canary rollout; replaced like current;
 * - standby: the previous release kept running, unrouted, for an instant rollback;
 * - retiring: being drained and stopped.
 */
export type GroupRole = 'incoming' | 'current' | 'canary' | 'standby' | 'retiring';

export class ReleaseGroup {
  readonly release: string;
  readonly dir: string;
  role: GroupRole;
  readonly instances = new Map<string, Instance>();
  readonly backoff = new Backoff({ baseMs: 500, maxMs: 30_000, resetAfterMs: 60_000 });
  /** When a standby group is due to be stopped (epoch ms), if it is a standby. */
  standbyUntil: number | null = null;
  standbyTimer: NodeJS.Timeout | null = null;
  /** Replacements scheduled but not started yet (so a crash storm does not over-spawn). */
  pendingReplacements = 0;

  constructor(release: string, dir: string, role: GroupRole) {
    this.release = release;
    this.dir = dir;
    this.role = role;
  }

  list(): Instance[] {
    return [...this.instances.values()];
  }

  healthy(): Instance[] {
    return this.list().filter((i) => i.healthy);
  }
}
