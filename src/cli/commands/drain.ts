// `baton drain` / `baton undrain`: this host's place in the load balancer in
// front of it (HAProxy's agent-check, /_baton/health). `baton fleet drain HOST`
// runs these on the host over ssh.

import { BatonError } from '../../core/errors.ts';
import { parseDuration } from '../../config/duration.ts';
import { formatDuration } from '../../core/time.ts';
import type { HostDrainStatus, StatusResponse } from '../../control/protocol.ts';
import { waitQuiet } from '../../control/wait-quiet.ts';
import { clientFor, type CliContext } from '../context.ts';

function say(ctx: CliContext, s: HostDrainStatus & { quietAfterMs?: number }): number {
  if (ctx.json) ctx.out(JSON.stringify(s) + '\n');
  else if (s.quietAfterMs !== undefined) ctx.out(`host ${s.mode === 'maint' ? 'in maintenance' : 'drained'}: no request in flight and none new after ${formatDuration(s.quietAfterMs)}\n`);
  else if (s.mode === 'ready') ctx.out(`host ready${s.weightPercent !== null ? ` at ${s.weightPercent}% of its weight` : ''}: the balancer sends it new requests\n`);
  else ctx.out(`host ${s.mode === 'maint' ? 'in maintenance' : 'draining'}: the balancer sends it no new requests; requests in flight finish\n`);
  return 0;
}

function durationFlag(ctx: CliContext, name: string): number | null {
  const v = ctx.flags[name];
  if (typeof v !== 'string') return null;
  const ms = parseDuration(v);
  if (ms === undefined) throw new BatonError('USAGE', `--${name} must be a duration like 2s, got "${v}"`);
  return ms;
}

export async function drainCommand(ctx: CliContext): Promise<number> {
  if (ctx.args.length > 0) throw new BatonError('USAGE', 'usage: baton drain [--maint] [--reason TEXT] [--wait-quiet 2s [--timeout 60s]]');
  const mode = ctx.flags['maint'] === true ? 'maint' : 'drain';
  const reason = typeof ctx.flags['reason'] === 'string' ? ctx.flags['reason'] : '';
  const quietMs = durationFlag(ctx, 'wait-quiet');
  const timeoutMs = durationFlag(ctx, 'timeout') ?? 60_000;
  const client = clientFor(ctx);
  const t0 = Date.now();
  const s = await client.post<HostDrainStatus>('/drain', { mode, reason });
  if (quietMs === null) return say(ctx, s);
  // Watched here, next to the daemon: a fleet drain runs this over ssh (one
  // command, not one round trip per look).
  await waitQuiet(() => client.get<StatusResponse>('/status'), quietMs, timeoutMs, (busy) =>
    new BatonError('FLEET_ROLLOUT_FAILED', `still busy after ${formatDuration(timeoutMs)}: ${busy} request(s) or WebSocket(s) in flight; the host stays drained (\`baton undrain\` puts it back)`));
  return say(ctx, { ...s, quietAfterMs: Date.now() - t0 });
}

export async function undrainCommand(ctx: CliContext): Promise<number> {
  if (ctx.args.length > 0) throw new BatonError('USAGE', 'usage: baton undrain [--weight PERCENT]');
  const w = ctx.flags['weight'];
  let weightPercent: number | null = null;
  if (typeof w === 'string') {
    weightPercent = Number(w.replace(/%$/, ''));
    if (!Number.isInteger(weightPercent) || weightPercent < 1 || weightPercent > 100) throw new BatonError('USAGE', `--weight must be a percentage from 1 to 100, got "${w}"`);
  }
  return say(ctx, await clientFor(ctx).post<HostDrainStatus>('/drain', { mode: 'ready', weightPercent, reason: typeof ctx.flags['reason'] === 'string' ? ctx.flags['reason'] : '' }));
}
