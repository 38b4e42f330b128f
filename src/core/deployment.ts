// The vocabulary of a deployment, shared by the deployer that runs it, the
// store that records it, the control API that streams it and the CLI that
// prints it. Types only: every layer may import them (see docs/ARCHITECTURE.md).

export type DeploymentKind = 'deploy' | 'rollback' | 'restart';

export type DeploymentState =
  | 'planned'
  | 'preparing'
  | 'starting'
  | 'verifying'
  | 'shifting'
  | 'draining'
  | 'done'
  | 'aborting'
  | 'failed'
  | 'rolled_back'
  /** Never started: the service refused it (another deployment held it); kept so `baton history` shows it. */
  | 'refused';

/** One line of a deployment's progress, streamed to the CLI and stored (except 'output'). */
export interface DeployEvent {
  /** 'output': one line of a hook's output, streamed but not stored line by line. */
  type: 'step' | 'info' | 'warn' | 'error' | 'output';
  /** The store's key of the deployment, global across services (internal). */
  deploymentId: number;
  /** The deployment's number within its service, as users name it (web#12). */
  seq: number;
  step: DeploymentState;
  message: string;
  at: number; // epoch ms
  /** Time spent in the step that just ended (on 'step' events), or the measured duration the message is about. */
  durationMs?: number;
  details?: string[];
  /** 'switched': the event of the traffic switch (a CLI interrupted after it cancels nothing). */
  milestone?: 'switched';
}

/** How a deployment ended: the last line of its stream. */
export interface DeployOutcome {
  /** The store's key of the deployment, global across services (internal). */
  deploymentId: number;
  /** The deployment's number within its service, as users name it (web#12). */
  seq: number;
  service: string;
  kind: DeploymentKind;
  fromRelease: string | null;
  toRelease: string;
  /**
   * 'switched': traffic has moved and the old instances are still draining (the
   * answer of `--until switched`; the deployment goes on in the daemon).
   */
  state: 'done' | 'failed' | 'rolled_back' | 'switched';
  durationMs: number;
  /** Time from the start of the deployment to the traffic switch. */
  switchAfterMs: number | null;
  /** Requests the service answered during the deployment. */
  requests: number;
  /** Of those, baton's own failures (no instance, 502/504, cut responses; not the maintenance page). */
  failed: number;
  /** Of those, answered with a 5xx by the app (the canary's errors show here, not in `failed`). */
  appErrors: number;
  retries: number;
  error: { code: string; message: string; details: string[] } | null;
}

/** What the caller of a deployment may hear besides its events. */
export interface RunHooks {
  /** Traffic has moved: the outcome so far (state 'switched'); draining follows. */
  switched?: (o: DeployOutcome) => void;
}

/** Where a deploy takes its release from: exactly one of dir, ref (the service's git source; '' = its branch), push. */
export interface DeploySource {
  dir?: string;
  ref?: string;
  push?: PushSource;
  /** Overrides the service's configured strategy. */
  strategy?: 'blue_green' | 'canary';
  /** Do not run the migrate hook: a fleet rollout ran it once on another host. */
  skipMigrate?: boolean;
  /** This deploy's canary plan as the operator typed it (`--steps 10,50`); implies the canary strategy. */
  steps?: string;
}

/**
 * When a long operation's stream ends: 'done' (default) after the old instances
 * drained; 'switched' as soon as traffic has moved (the result's state is then
 * 'switched' and draining goes on in the daemon, reported by status).
 */
export type Until = 'done' | 'switched';

/** A commit being pushed (pre-receive hook): exported from the pushed repository with the hook's object environment. */
export interface PushSource {
  gitDir: string;
  commit: string;
  ref: string;
  env: Record<string, string>;
}
