// The work of a deployment before any new instance starts, and its hooks:
// shared files linked into the release, the build (once per release), the
// migration (once per deployment, under a lock), and the smoke and
// after_switch hooks. Each hook's output is streamed to the caller line by
// line and kept whole in a log file; its tail goes into the deployment record.

import { lstat, mkdir, readlink, rm, symlink } from 'node:fs/promises';
import path from 'node:path';
import type { HookConfig, ServiceConfig } from '../config/types.ts';
import { BatonError } from '../core/errors.ts';
import { formatDuration } from '../core/time.ts';
import { acquireLock, hookError, runHook, type HookName } from '../hooks/index.ts';
import { handReleaseTo, shareReleaseWith } from './release-owner.ts';

/** How a step reports progress: persisted lines (info/warn) and streamed-only output. */
export interface StepReporter {
  info(message: string, durationMs?: number): void;
  warn(message: string, details?: string[]): void;
  /** One line of a hook's output: streamed to the CLI, not stored line by line. */
  output(line: string): void;
}

export interface HookContext {
  stateDir: string;
  service: ServiceConfig;
  /** The deployment's number within the service (web#12): BATON_DEPLOYMENT, and the name of its hook logs. */
  deploymentId: number;
  release: { id: string; dir: string };
  previousRelease: string | null;
  extraEnv?: Record<string, string>;
  /** A cancelled deployment kills its running hook (never a migration: it always runs to its end). */
  signal?: AbortSignal | undefined;
}

/** Where the shared paths of a service live. */
export function sharedRoot(stateDir: string, service: string): string {
  return path.join(stateDir, 'shared', service);
}

/**
 * Link each shared path of the service into the release directory (replacing
 * whatever the release has there). All missing shared paths are reported at
 * once, before anything is changed.
 */
export async function linkShared(stateDir: string, svc: ServiceConfig, releaseDir: string): Promise<number> {
  if (svc.shared.length === 0) return 0;
  const root = sharedRoot(stateDir, svc.name);
  const missing: string[] = [];
  for (const p of svc.shared) {
    if (!(await exists(path.join(root, p)))) missing.push(path.join(root, p));
  }
  if (missing.length) {
    throw new BatonError(
      'RELEASE_INVALID',
      `${missing.length} shared path(s) of ${svc.name} missing: create them before deploying (they persist across releases)`,
      missing,
    );
  }
  for (const p of svc.shared) {
    const inRelease = path.join(releaseDir, p);
    const target = path.join(root, p);
    // Already linked (a restart or a redeploy of this release): leave it, running instances use it.
    if ((await readlink(inRelease).catch(() => null)) === target) continue;
    await rm(inRelease, { recursive: true, force: true });
    await mkdir(path.dirname(inRelease), { recursive: true });
    await symlink(target, inRelease);
  }
  return svc.shared.length;
}

/**
 * Where a deployment's hook writes its full output (read back by the dashboard), by the
 * deployment's number in the service. The '.' keeps these apart from the files named
 * by global id before migration 3 (`deploy-<id>-<hook>.log`): a hook appends to its file.
 */
export function hookLogFile(stateDir: string, service: string, seq: number, name: HookName): string {
  return path.join(stateDir, 'logs', service, `deploy-${seq}.${name}.log`);
}

/** Run one configured hook; throws BatonError('HOOK_FAILED') with the output tail when it fails. */
export async function runServiceHook(name: HookName, hook: HookConfig, ctx: HookContext, report: StepReporter): Promise<number> {
  const logFile = hookLogFile(ctx.stateDir, ctx.service.name, ctx.deploymentId, name);
  await mkdir(path.dirname(logFile), { recursive: true });
  report.info(`${name} hook: ${hook.command}`);
  const runAs = ctx.service.runAs;
  // The build writes into the release: it has the tree while it runs, then the app's user can only read it.
  if (runAs && name === 'build') await handReleaseTo(ctx.release.dir, runAs);
  const running = runHook(
    { name, command: hook.command, timeoutMs: hook.timeoutMs },
    {
      cwd: ctx.release.dir,
      logFile,
      env: {
        ...ctx.service.env,
        BATON_SERVICE: ctx.service.name,
        BATON_RELEASE: ctx.release.id,
        BATON_RELEASE_DIR: ctx.release.dir,
        BATON_PREVIOUS_RELEASE: ctx.previousRelease ?? '',
        BATON_DEPLOYMENT: String(ctx.deploymentId),
        BATON_HOOK: name,
        ...(runAs ? { HOME: runAs.home, USER: runAs.user, LOGNAME: runAs.user } : {}),
        ...ctx.extraEnv,
      },
      onLine: (line) => report.output(line),
      ...(runAs ? { runAs } : {}),
      ...(ctx.signal && name !== 'migrate' ? { signal: ctx.signal } : {}),
    },
  );
  let run;
  try {
    run = await running;
  } finally {
    if (runAs && name === 'build') await shareReleaseWith(ctx.release.dir, runAs);
  }
  const err = hookError(run);
  if (err) throw new BatonError('HOOK_FAILED', err.message, [...err.details, `full output: ${logFile}`]);
  report.info(`${name} hook done in ${formatDuration(run.durationMs)} (output: ${logFile})`, run.durationMs);
  return run.durationMs;
}

/** The migrate hook, under a lock held across daemons and deployments of the state directory. */
export async function runMigration(hook: HookConfig, ctx: HookContext, report: StepReporter): Promise<void> {
  const lockFile = path.join(ctx.stateDir, 'locks', 'migrate.lock');
  await mkdir(path.dirname(lockFile), { recursive: true });
  const lock = await acquireLock(lockFile, { purpose: `migrate ${ctx.service.name} deployment #${ctx.deploymentId}`, timeoutMs: hook.timeoutMs });
  if (lock.tookOverStaleFrom !== null) report.warn(`took over a stale migration lock left by pid ${lock.tookOverStaleFrom}`);
  try {
    await runServiceHook('migrate', hook, ctx, report);
  } finally {
    await lock.release();
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}
