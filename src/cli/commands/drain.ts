// `baton drain` / `baton undrain`: this host's place in the load balancer in
// front of it (HAProxy's agent-check, /_baton/health). `baton fleet drain HOST`
// runs these on the host over ssh.

import { BatonError } from '../../core/errors.ts';
import type { HostDrainStatus } from '../../control/protocol.ts';
import { clientFor, type CliContext } from '../context.ts';

function say(ctx: CliContext, s: HostDrainStatus): number {
  if (ctx.json) ctx.out(JSON.stringify(s) + '\n');
  else if (s.mode === 'ready') ctx.out(`host ready${s.weightPercent !== null ? ` at ${s.weightPercent}% of its weight` : ''}: the balancer sends it new requests\n`);
  else ctx.out(`host ${s.mode === 'maint' ? 'in maintenance' : 'draining'}: the balancer sends it no new requests; requests in flight finish\n`);
  return 0;
}

export async function drainCommand(ctx: CliContext): Promise<number> {
  if (ctx.args.length > 0) throw new BatonError('USAGE', 'usage: baton drain [--maint] [--reason TEXT]');
  const mode = ctx.flags['maint'] === true ? 'maint' : 'drain';
  const reason = typeof ctx.flags['reason'] === 'string' ? ctx.flags['reason'] : '';
  return say(ctx, await clientFor(ctx).post<HostDrainStatus>('/drain', { mode, reason }));
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
