// What every CLI command receives: parsed options, output channels, a client.

import { hostname, userInfo } from 'node:os';
import { ControlClient, remoteFromEnv } from '../control/client.ts';
import { locateSocket } from './locate.ts';

export interface CliContext {
  args: string[]; // positional arguments after the verb
  flags: Record<string, string | boolean | undefined>;
  json: boolean;
  out: (s: string) => void;
  err: (s: string) => void;
}

export function clientFor(ctx: CliContext): ControlClient {
  // A daemon's remote control listener (control.remote), when the environment names one.
  const remote = remoteFromEnv();
  if (remote !== null) return new ControlClient(remote.url.origin, `is the daemon at ${remote.url.origin} running?`, remote);
  const { socket, config } = locateSocket({ socket: stringFlag(ctx, 'socket'), config: stringFlag(ctx, 'config') });
  const hint = config
    ? `the daemon of ${config.file} (found by ${config.via}) is not running: start it with \`baton daemon --config ${config.file}\``
    : 'is the daemon running? (the socket was given by --socket or $BATON_SOCKET)';
  return new ControlClient(socket, hint);
}

/** A string flag's value; the verb table guarantees string flags are strings. */
export function stringFlag(ctx: CliContext, name: string): string | undefined {
  const v = ctx.flags[name];
  return typeof v === 'string' ? v : undefined;
}

/** The person and host behind an operation, recorded with each deployment. */
export function actor(via = 'cli'): string {
  const user = process.env['USER'] ?? process.env['LOGNAME'] ?? userInfo().username;
  const from = process.env['SSH_CONNECTION']?.split(' ')[0];
  return `${user}@${hostname()}${from ? ` from ${from}` : ''} (${via})`;
}
