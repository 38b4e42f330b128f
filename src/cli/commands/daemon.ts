// `baton daemon`: run the daemon in the foreground, JSON-lines logs on stdout.

import { Daemon } from '../../daemon/daemon.ts';
import { locateConfig } from '../locate.ts';
import { stringFlag, type CliContext } from '../context.ts';
import { errorMessage } from '../../core/errors.ts';

export async function daemonCommand(ctx: CliContext): Promise<number> {
  const configFile = locateConfig(stringFlag(ctx, 'config')).file;
  const daemon = await Daemon.start({ configFile });
  // SIGTERM/SIGINT: exit but leave the instances running for the next daemon
  // (an upgrade or restart must not take the site down). `baton shutdown
  // --stop-instances` stops them too.
  const leave = (sig: string): void => {
    daemon.logger.info('signal received: stopping, instances keep running', { signal: sig });
    void daemon.stop(false);
  };
  process.once('SIGTERM', () => leave('SIGTERM'));
  process.once('SIGINT', () => leave('SIGINT'));
  process.on('SIGHUP', () => {
    daemon.reload().catch((err: unknown) => {
      const details = (err as { details?: string[] }).details ?? [];
      daemon.logger.error('reload refused; the running configuration is unchanged', { error: errorMessage(err), details });
    });
  });
  await daemon.stopped;
  return 0;
}
