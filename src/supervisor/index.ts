// The supervisor's public surface: app instances as process groups (spawn,
// re-adopt, health, stop), ports, restart backoff, logs, /proc helpers.

export type { InstanceState, ExitInfo, InstanceListener, InstanceRecord } from './types.ts';
export { Instance, type SpawnOptions } from './instance.ts';
export { allocatePort } from './ports.ts';
export { tailLog, followLog, followService, stoppedLogs, pruneStoppedLogs, type LogSource } from './logs.ts';
export { readProcStat, isSameProcessAlive, type ProcStat } from '../core/proc.ts';
export { killStrayGroup } from '../core/signals.ts';
export { Backoff, type BackoffOptions } from './backoff.ts';
