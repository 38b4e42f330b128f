// What is persisted of an app instance so a restarted daemon can re-adopt it:
// written by the supervisor's instances, stored by the store. Types only.

export interface InstanceRecord {
  id: string;
  service: string;
  release: string;
  releaseDir: string;
  pid: number;
  /** /proc start time of pid (clock ticks since boot): tells a reused pid apart. */
  startTime: string;
  port: number;
  logFile: string;
}
