// `baton deploy`, `baton rollback`, `baton restart`: stream the operation's
// progress and exit non-zero unless it ended done.

import { BatonError, EXIT } from '../../core/errors.ts';
import type { DeployOutcome } from '../../core/deployment.ts';
import type { StreamLine } from '../../control/protocol.ts';
import { actor, clientFor, type CliContext } from '../context.ts';
import { outcomeSummary, progressPrinter } from '../output.ts';
import path from 'node:path';

/** `--until switched`: return once traffic has moved; draining goes on in the daemon (see `baton status`). */
function until(ctx: CliContext): { until?: 'switched' } {
  const u = ctx.flags['until'];
  if (u === undefined || u === 'done') return {};
  if (u === 'switched') return { until: 'switched' };
  throw new BatonError('USAGE', `--until must be "switched" (return once traffic has moved) or "done" (the default: once the old instances drained), got "${String(u)}"`);
}

/** The exit code of an operation interrupted by Ctrl-C (128 + SIGINT), whatever became of it. */
const INTERRUPTED = EXIT.INTERRUPTED;

async function run(ctx: CliContext, service: string, verb: 'deploy' | 'rollback' | 'restart', body: Record<string, unknown>, via = 'cli'): Promise<number> {
  body = { ...body, ...until(ctx) };
  const client = clientFor(ctx);
  const print = progressPrinter(ctx.out);
  // Written by the stream callback: an object, so that the type checker does not narrow them to their initial null.
  const last: { outcome: DeployOutcome | null; error: string | null } = { outcome: null, error: null };
  /** The deployment's number within the service (what the abort names). */
  let seq: number | null = null;
  let switched = false;
  let interrupted = false;
  let leave: (code: number) => void = () => {};
  const left = new Promise<number>((resolve) => (leave = resolve));

  // Ctrl-C before the switch cancels the operation (nobody saw the new release
  // yet): the daemon stops its new instances, then the stream ends. After the
  // switch there is nothing to cancel: the old instances drain in the daemon.
  const cancel = (): void => {
    if (seq === null) return; // asked again once the first event names the deployment
    ctx.err(`\nbaton: interrupted: cancelling deployment #${seq} of ${service} (nothing has switched yet)…\n`);
    client.post(`/services/${encodeURIComponent(service)}/abort`, { deployment: seq, interrupted: true }).catch((err: unknown) => {
      ctx.err(`baton: could not cancel deployment #${seq} of ${service}: ${err instanceof Error ? err.message : String(err)}\n`);
      leave(INTERRUPTED);
    });
  };
  const onSigint = (): void => {
    if (interrupted) {
      // A second Ctrl-C stops waiting; the cancel asked for goes on in the daemon.
      ctx.err(`baton: not waiting any longer; see \`baton status ${service}\`\n`);
      leave(INTERRUPTED);
      return;
    }
    interrupted = true;
    if (switched) {
      ctx.err(`\nbaton: interrupted after the switch: the ${verb} of ${service} goes on in the daemon (the old instances drain; \`baton status ${service}\`). To go back: \`baton rollback ${service}\`\n`);
      leave(INTERRUPTED);
      return;
    }
    cancel();
  };
  process.on('SIGINT', onSigint);
  try {
    const streamed = client.stream(`/services/${encodeURIComponent(service)}/${verb}`, { ...body, actor: actor(via) }, (line: StreamLine) => {
      if (ctx.json) ctx.out(JSON.stringify(line) + '\n');
      else print(line);
      if (line.type === 'event') {
        if (seq === null) {
          seq = line.event.seq;
          if (interrupted && !switched) cancel();
        }
        if (line.event.milestone === 'switched') switched = true;
      }
      if (line.type === 'result') last.outcome = line.outcome;
      if (line.type === 'error') last.error = `${line.error.code}: ${line.error.message}`;
    });
    const early = await Promise.race([streamed.then(() => null), left]);
    if (early !== null) return early;
  } finally {
    process.off('SIGINT', onSigint);
  }
  const o = last.outcome;
  if (!o) throw new BatonError('INTERNAL', `the daemon ended the ${verb} stream without a result${last.error ? ` (${last.error})` : ''}`);
  if (!ctx.json) ctx.out(outcomeSummary(o) + '\n');
  if (interrupted) return INTERRUPTED;
  return o.state === 'done' || o.state === 'switched' ? 0 : 1;
}

export function deployCommand(ctx: CliContext): Promise<number> {
  const [service, dir, extra] = ctx.args;
  const ref = ctx.flags['ref'];
  if (!service || extra !== undefined || (dir !== undefined && typeof ref === 'string')) {
    throw new BatonError('USAGE', 'usage: baton deploy SERVICE [RELEASE_DIR | --ref REF] [--strategy canary|blue_green] [--steps 10,50] [--until switched] [--skip-migrate]');
  }
  const strategy = ctx.flags['strategy'];
  if (strategy !== undefined && strategy !== 'canary' && strategy !== 'blue_green') {
    throw new BatonError('USAGE', `--strategy must be "canary" or "blue_green", got "${String(strategy)}"`);
  }
  const steps = ctx.flags['steps'];
  if (steps !== undefined && typeof steps !== 'string') throw new BatonError('USAGE', '--steps needs a plan, e.g. --steps 10,50');
  if (steps !== undefined && strategy === 'blue_green') throw new BatonError('USAGE', '--steps is a canary plan; it cannot go with --strategy blue_green');
  // The plan itself is read (and refused with a clear message) by the daemon.
  const how = {
    ...(strategy === undefined ? {} : { strategy }),
    ...(steps === undefined ? {} : { steps }),
    ...(ctx.flags['skip-migrate'] === true ? { skipMigrate: true } : {}),
  };
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
  if (!service) throw new BatonError('USAGE', 'usage: baton rollback SERVICE [--to RELEASE] [--until switched]');
  const to = ctx.flags['to'];
  return run(ctx, service, 'rollback', typeof to === 'string' ? { to } : {});
}

export function restartCommand(ctx: CliContext): Promise<number> {
  const [service] = ctx.args;
  if (!service) throw new BatonError('USAGE', 'usage: baton restart SERVICE [--until switched]');
  return run(ctx, service, 'restart', {});
}
