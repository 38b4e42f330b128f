// The plain types of the supervisor's public API.

import type { Instance } from './instance.ts';

export type InstanceState = 'starting' | 'healthy' | 'unhealthy' | 'stopping' | 'exited';

export interface ExitInfo {
  /** Exit code; null when killed by a signal, or when unknown (an adopted instance is not our child). */
  code: number | null;
  signal: string | null;
  /** Epoch ms when the exit was seen. */
  at: number;
}

/** How an Instance reports to its owner (the daemon). Called synchronously; keep handlers quick. */
export interface InstanceListener {
  /** After threshold crossings only: starting→healthy, healthy→unhealthy, unhealthy→healthy. */
  instanceHealthChanged(inst: Instance, healthy: boolean): void;
  /** Any exit, expected (after stop()) or not. Called once. */
  instanceExited(inst: Instance, exit: ExitInfo): void;
}

export type { InstanceRecord } from '../core/instance-record.ts';
