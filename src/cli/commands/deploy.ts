// `baton deploy`, `baton rollback`, `baton restart`: stream the operation's
// progress and exit non-zero unless it ended done.

import { BatonError } from '../../core/errors.ts';
import type { DeployOutcome } from '../../core/deployment.ts';
import type { StreamLine } from '../../control/protocol.ts';
import { actor, clientFor, type CliContext } from '../context.ts';
import { outcomeSummary, progressPrinter } from '../output.ts';
import path from 'node:path';

async function run(ctx: CliContext, service: string, verb: 'deploy' | 'rollback' | 'restart', body: Record<string, unknown>, via = 'cli'): Promise<number> {
  const client = clientFor(ctx);
  const print = progressPrinter(ctx.out);
  // Written by the stream callback: objects, so that the type checker does not
  // narrow them to their initial null.
  const last: { outcome: DeployOutcome | null; error: string | null } = { outcome: null, error: null };
  await client.stream(`/services/${encodeURIComponent(service)}/${verb}`, { ...body, actor: actor(via) }, (line: StreamLine) => {
    if (ctx.json) ctx.out(JSON.stringify(line) + '\n');
    else print(line);
    if (line.type === 'result') last.outcome = line.outcome;
    if (line.type === 'error') last.error = `${line.error.code}: ${line.error.message}`;
  });
  const o = last.outcome;
  if (!o) throw new BatonError('INTERNAL', `the daemon ended the ${verb} stream without a result${last.error ? ` (${last.error})` : ''}`);
  if (!ctx.json) ctx.out(outcomeSummary(o) + '\n');
  return o.state === 'done' ? 0 : 1;
}

export function deployCommand(ctx: CliContext): Promise<number> {
  const [service, dir, extra] = ctx.args;
  const ref = ctx.flags['ref'];
  if (!service || extra !== undefined || (dir !== undefined && typeof ref === 'string')) {
    throw new BatonError('USAGE', 'usage: baton deploy SERVICE [RELEASE_DIR | --ref REF] [--strategy canary|blue_green] [--skip-migrate]');
  }
  const strategy = ctx.flags['strategy'];
  if (strategy !== undefined && strategy !== 'canary' && strategy !== 'blue_green') {
    throw new BatonError('USAGE', `--strategy must be "canary" or "blue_green", got "${String(strategy)}"`);
  }
  const how = { ...(strategy === undefined ? {} : { strategy }), ...(ctx.flags['skip-migrate'] === true ? { skipMigrate: true } : {}) };
  if (dir !== undefined) return run(ctx, service, 'deploy', { releaseDir: path.resolve(dir), ...how });
  return run(ctx, service, 'deploy', typeof ref === 'string' ? { ref, ...how } : how);
}

/** Used by the pre-receive hook `baton git-remote` installs: deploy the pushed commit, or reject the push. */
export function deployPushCommand(ctx: CliContext): Promise<number> {
  const [service] = ctx.args;
  const { 'git-dir': gitDir, commit, ref } = ctx.flags;
  if (!service || typeof gitDir !== 'string' || typeof commit !== 'string' || typeof ref !== 'string') {
    throw new BatonError('USAGE', 'usage: baton deploy-push SERVICE --git-dir DIR --commit SHA --ref REF (run by the git hook)');
  }
  // Objects of a push in progress are in a quarantine only the hook's environment names.
  const env: Record<string, string> = {};
  for (const k of ['GIT_OBJECT_DIRECTORY', 'GIT_ALTERNATE_OBJECT_DIRECTORIES', 'GIT_QUARANTINE_PATH']) {
    const v = process.env[k];
    if (v !== undefined) env[k] = v.split(':').map((x) => path.resolve(gitDir, x)).join(':');
  }
  return run(ctx, service, 'deploy', { push: { gitDir: path.resolve(gitDir), commit, ref, env } }, 'git push');
}

export function rollbackCommand(ctx: CliContext): Promise<number> {
  const [service] = ctx.args;
  if (!service) throw new BatonError('USAGE', 'usage: baton rollback SERVICE [--to RELEASE]');
  const to = ctx.flags['to'];
  return run(ctx, service, 'rollback', typeof to === 'string' ? { to } : {});
}

export function restartCommand(ctx: CliContext): Promise<number> {
  const [service] = ctx.args;
  if (!service) throw new BatonError('USAGE', 'usage: baton restart SERVICE');
  return run(ctx, service, 'restart', {});
}
