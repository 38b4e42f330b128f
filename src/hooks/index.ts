// Deployment hooks (build, migrate, smoke, after_switch): running an operator's
// command with its output streamed and kept, and a lock across processes (for
// migrations).

export { runHook, hookError, TAIL_LINES, HOOK_KILL_GRACE_MS, LEFTOVER_GRACE_MS } from './run.ts';
export type { HookName, HookSpec, HookRun, RunHookOptions } from './run.ts';
export { acquireLock, DEFAULT_LOCK_POLL_MS } from './lock.ts';
export type { Lock, LockHolder, AcquireLockOptions } from './lock.ts';
export { MAX_LINE_BYTES } from './lines.ts';
