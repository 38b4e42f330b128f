// Row types of the store: plain objects with camelCase fields; times are epoch ms.

import type { InstanceRecord } from '../core/instance-record.ts';
import type { DeploymentKind, DeploymentState } from '../core/deployment.ts';

export type { DeploymentKind, DeploymentState };

/** States a deployment never leaves; every other state means "still in progress". */
export const FINAL_DEPLOYMENT_STATES: readonly DeploymentState[] = ['done', 'failed', 'rolled_back', 'refused'];

export type EventLevel = 'info' | 'warn' | 'error';

/** The routing state of one service that must survive a crash. */
export interface ServiceState {
  name: string;
  currentRelease: string | null;
  standbyRelease: string | null;
  /** Maintenance mode, when on: the operator's message (may be empty). */
  maintenance: { message: string; since: number } | null;
  paused: boolean;
  updatedAt: number;
}

/** Where a release came from: a local directory (copied) or a git commit (exported). */
export type ReleaseKind = 'dir' | 'git';

/** 'none': no build hook; 'ok': built (never again); 'failed': the last build failed (the next deploy retries it). */
export type BuildStatus = 'none' | 'ok' | 'failed';

export interface GitReleaseInfo {
  commit: string; // full sha
  ref: string; // what was asked for: branch, tag or sha
  author: string;
  message: string; // subject line
}

export interface NewRelease {
  id: string; // unique within the service
  service: string;
  name: string; // human label, e.g. a git short sha or a directory name
  kind?: ReleaseKind; // default 'dir'
  sourcePath: string; // where the release was built from: a directory or a repository
  dir: string; // the immutable release directory
  git?: GitReleaseInfo | null;
  createdAt: number;
}

export interface ReleaseRow extends NewRelease {
  kind: ReleaseKind;
  git: GitReleaseInfo | null;
  buildStatus: BuildStatus;
  buildMs: number | null;
  builtAt: number | null;
  lastDeployedAt: number | null;
}

export interface NewDeployment {
  service: string;
  kind: DeploymentKind;
  fromRelease: string | null;
  toRelease: string;
  actor: string;
}

export interface DeploymentPatch {
  state?: DeploymentState;
  finishedAt?: number | null;
  error?: string | null;
  requests?: number;
  failed?: number;
}

/**
 * How a deployment is named. `id`: global across services, the store's key (events
 * refer to it). `seq`: 1, 2, 3… within its service, the number users see ("web#12").
 */
export interface DeploymentKey {
  id: number;
  seq: number;
}

export interface DeploymentRow extends NewDeployment, DeploymentKey {
  state: DeploymentState;
  startedAt: number;
  finishedAt: number | null;
  error: string | null;
  /** Client requests to the service while the deployment ran, and how many of them failed. */
  requests: number;
  failed: number;
}

export interface NewDeploymentEvent {
  deploymentId: number;
  step: string;
  message: string;
  at: number;
  durationMs?: number | null;
  level?: EventLevel;
}

export interface DeploymentEventRow {
  id: number;
  deploymentId: number;
  step: string;
  message: string;
  at: number;
  durationMs: number | null;
  level: EventLevel;
}

/** An instance as recorded: what the supervisor needs to re-adopt it, plus its last known state. */
export interface InstanceRow extends InstanceRecord {
  state: string;
  createdAt: number;
}
