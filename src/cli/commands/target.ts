// `baton target drain|undrain SERVICE TARGET`: on a front daemon (a service
// with `targets`), take one host out of its rotation or put it back. The
// host itself is not told: for that, `baton drain` on the host.

import { clientFor, type CliContext } from '../context.ts';

interface Answer {
  service: string;
  target: string;
  state: string;
}

async function set(ctx: CliContext, drain: boolean): Promise<number> {
  const [service, target] = ctx.args as [string, string];
  const reason = typeof ctx.flags['reason'] === 'string' ? ctx.flags['reason'] : '';
  const a = await clientFor(ctx).post<Answer>(`/target/${drain ? 'drain' : 'undrain'}`, { service, target, reason });
  if (ctx.json) ctx.out(JSON.stringify(a) + '\n');
  else if (drain) ctx.out(`${a.service}: target ${a.target} drained here: no new request; those in flight finish\n`);
  else ctx.out(`${a.service}: target ${a.target} ${a.state === 'up' ? 'back in rotation' : `undrained here, still out of rotation (${a.state})`}\n`);
  return 0;
}

export const targetDrainCommand = (ctx: CliContext): Promise<number> => set(ctx, true);
export const targetUndrainCommand = (ctx: CliContext): Promise<number> => set(ctx, false);
