// `baton upgrade`: the daemon replaces itself with the baton installed now,
// handing over its listening sockets and state (src/daemon/upgrade.ts). The
// progress is streamed; a failure exits non-zero with the reason, and the
// old daemon keeps serving.

import { BatonError, isErrorCode } from '../../core/errors.ts';
import type { UpgradeResult } from '../../control/protocol.ts';
import { clientFor, type CliContext } from '../context.ts';

export async function upgradeCommand(ctx: CliContext): Promise<number> {
  let result: UpgradeResult | null = null;
  let failure: BatonError | null = null;
  await clientFor(ctx).stream('/upgrade', {}, (line) => {
    if (line.type === 'upgrade') {
      if (!ctx.json) ctx.out(`  ${line.progress.step.padEnd(8)} ${line.progress.message}\n`);
    } else if (line.type === 'upgraded') {
      result = line.result;
    } else if (line.type === 'error') {
      const code = isErrorCode(line.error.code) ? line.error.code : 'INTERNAL';
      failure = new BatonError(code, line.error.message, line.error.details);
    }
  });
  if (failure !== null) throw failure;
  const r = result as UpgradeResult | null;
  if (r === null) throw new BatonError('UPGRADE_FAILED', 'the daemon closed the connection before the upgrade finished; see `baton status` and the daemon\'s log');
  if (ctx.json) {
    ctx.out(JSON.stringify(r, null, 2) + '\n');
  } else {
    ctx.out(`upgraded: daemon pid ${r.oldPid} → ${r.newPid}, serving ${r.msToServing} ms after the command; ` +
      `pid ${r.oldPid} finishes ${r.inflight} request(s) and keeps ${r.webSockets} WebSocket(s) until they close or ${new Date(r.drainDeadline).toISOString()}, then exits\n`);
  }
  return 0;
}
