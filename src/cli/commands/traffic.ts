// `baton promote`, `abort`, `maintenance`, `pause`, `resume`, `beta`: the
// operator's hands on a service's traffic.

import { BatonError } from '../../core/errors.ts';
import { parseDuration } from '../../config/duration.ts';
import { clientFor, type CliContext } from '../context.ts';

function service(ctx: CliContext, usage: string): string {
  const [name, ...rest] = ctx.args;
  if (!name || rest.length > (usage.includes('on|off') ? 1 : 0)) throw new BatonError('USAGE', `usage: baton ${usage}`);
  return name;
}

function print(ctx: CliContext, result: unknown, text: string): number {
  ctx.out(ctx.json ? JSON.stringify(result) + '\n' : text + '\n');
  return 0;
}

export async function promoteCommand(ctx: CliContext): Promise<number> {
  const name = service(ctx, 'promote SERVICE [--full]');
  const full = ctx.flags['full'] === true;
  // Answers once the promotion is routed, not before.
  const r = await clientFor(ctx).post<{ release: string; weight: number; step: number; of: number; switched: boolean }>(`/services/${encodeURIComponent(name)}/promote`, { full });
  return print(ctx, r, r.switched ? `${r.release} now serves all of ${name}` : `${r.release} now gets ${r.weight}% of ${name}'s visitors (step ${r.step}/${r.of})`);
}

export async function abortCommand(ctx: CliContext): Promise<number> {
  const name = service(ctx, 'abort SERVICE');
  // Answers once the abort is live: a canary's visitors are back on the stable release, or a deploy that had not switched is cancelled.
  const r = await clientFor(ctx).post<{ seq: number; what: 'canary' | 'deploy' }>(`/services/${encodeURIComponent(name)}/abort`);
  return print(ctx, r, r.what === 'canary'
    ? `deployment #${r.seq} aborted: all traffic is back on the stable release; the canary drains`
    : `deployment #${r.seq} cancelled before its switch: its new instances are stopped, the current release keeps serving`);
}

export async function maintenanceCommand(ctx: CliContext): Promise<number> {
  const name = service(ctx, 'maintenance SERVICE on|off [--message TEXT]');
  const mode = ctx.args[1];
  if (mode !== 'on' && mode !== 'off') throw new BatonError('USAGE', `usage: baton maintenance SERVICE on|off [--message TEXT] (got "${mode ?? ''}")`);
  const message = typeof ctx.flags['message'] === 'string' ? ctx.flags['message'] : '';
  const r = await clientFor(ctx).post(`/services/${encodeURIComponent(name)}/maintenance`, { on: mode === 'on', message });
  return print(ctx, r, mode === 'on' ? `${name}: maintenance page on (503 with Retry-After; the allow-list still reaches the app)` : `${name}: maintenance off, traffic flows`);
}

export async function pauseCommand(ctx: CliContext): Promise<number> {
  const name = service(ctx, 'pause SERVICE');
  const r = await clientFor(ctx).post(`/services/${encodeURIComponent(name)}/pause`);
  return print(ctx, r, `${name}: paused; new requests are held until \`baton resume ${name}\``);
}

export async function resumeCommand(ctx: CliContext): Promise<number> {
  const name = service(ctx, 'resume SERVICE');
  const r = await clientFor(ctx).post(`/services/${encodeURIComponent(name)}/resume`);
  return print(ctx, r, `${name}: resumed; held requests are delivered`);
}

export async function betaCommand(ctx: CliContext): Promise<number> {
  const name = service(ctx, 'beta SERVICE [--ttl 24h]');
  const ttlText = typeof ctx.flags['ttl'] === 'string' ? ctx.flags['ttl'] : '24h';
  const ttlMs = parseDuration(ttlText);
  if (ttlMs === undefined || ttlMs < 1000) throw new BatonError('USAGE', `--ttl must be a duration like "24h" or "30m", got "${ttlText}"`);
  const r = await clientFor(ctx).post<{ url: string; expiresAt: number }>(`/services/${encodeURIComponent(name)}/beta`, { ttlMs });
  return print(ctx, r, `${r.url}\n(one use, valid ${ttlText.trim()}: whoever opens it is sent to ${name}'s canary releases)`);
}
