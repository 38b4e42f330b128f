// `baton reload` and `baton shutdown`.

import type { ReloadResult } from '../../control/protocol.ts';
import { clientFor, type CliContext } from '../context.ts';

export async function reloadCommand(ctx: CliContext): Promise<number> {
  const r = await clientFor(ctx).post<ReloadResult>('/reload');
  if (ctx.json) ctx.out(JSON.stringify(r, null, 2) + '\n');
  else ctx.out(`reloaded ${r.config}\n${r.changes.length ? r.changes.map((c) => `  ${c}`).join('\n') : '  no changes'}\n`);
  return 0;
}

export async function shutdownCommand(ctx: CliContext): Promise<number> {
  const stopInstances = ctx.flags['stop-instances'] === true;
  await clientFor(ctx).post('/shutdown', { stopInstances });
  ctx.out(stopInstances ? 'daemon stopping; instances are drained and stopped\n' : 'daemon stopping; instances keep running for the next daemon\n');
  return 0;
}
