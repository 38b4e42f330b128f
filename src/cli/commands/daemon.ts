// `baton daemon`: run the daemon in the foreground, JSON-lines logs on stdout.

import { Daemon } from '../../daemon/daemon.ts';
import { reportFailed, reportReady } from '../../daemon/handover.ts';
// Not src/cli/locate.ts nor context.ts's functions: they bring the YAML parser
// and the control client, which would stay resident in the daemon for nothing.
import { locateConfig } from '../config-file.ts';
import type { CliContext } from '../context.ts';
import { errorMessage } from '../../core/errors.ts';

/**
 * SIGHUP and SIGUSR2 terminate a Node process that has no handler for them.
 * Until the daemon serves, one that arrives (a reload or an upgrade asked too
 * early, e.g. by a script right after `systemctl start`) is noted and ignored
 * instead: there is nothing to reload or hand over yet.
 */
const STARTING_SIGNALS = ['SIGHUP', 'SIGUSR2'] as const;
function ignoreWhileStarting(signal: NodeJS.Signals): void {
  process.stderr.write(`baton: ${signal} arrived while the daemon was starting; ignored (send it again once it serves)\n`);
}

export async function daemonCommand(ctx: CliContext): Promise<number> {
  for (const sig of STARTING_SIGNALS) process.on(sig, ignoreWhileStarting);
  const flag = ctx.flags['config'];
  const configFile = locateConfig(typeof flag === 'string' ? flag : undefined).file;
  let daemon: Daemon;
  try {
    daemon = await Daemon.start({ configFile });
  } catch (err) {
    // Started by `baton upgrade`: the old daemon keeps serving and reports why.
    await reportFailed(err);
    throw err;
  }
  // Serving: tell the daemon this one replaces (if any), and systemd.
  await reportReady(daemon.logger, (totals) => daemon.proxy.addCounterTotals(totals));
  // SIGTERM/SIGINT: exit but leave the instances running for the next daemon
  // (an upgrade or restart must not take the site down). `baton shutdown
  // --stop-instances` stops them too.
  const leave = (sig: string): void => {
    daemon.logger.info('signal received: stopping, instances keep running', { signal: sig });
    void daemon.stop(false);
  };
  for (const sig of STARTING_SIGNALS) process.off(sig, ignoreWhileStarting);
  process.once('SIGTERM', () => leave('SIGTERM'));
  process.once('SIGINT', () => leave('SIGINT'));
  process.on('SIGHUP', () => {
    daemon.reload().catch((err: unknown) => {
      const details = (err as { details?: string[] }).details ?? [];
      daemon.logger.error('reload refused; the running configuration is unchanged', { error: errorMessage(err), details });
    });
  });
  // SIGUSR2: `baton upgrade` without the CLI (nginx's binary upgrade signal); the outcome is in the log.
  process.on('SIGUSR2', () => {
    daemon.upgrade(() => {}).catch((err: unknown) => {
      daemon.logger.error('upgrade failed; this daemon keeps serving', { error: errorMessage(err), details: (err as { details?: string[] }).details ?? [] });
    });
  });
  await daemon.stopped;
  return 0;
}
