// What every CLI command receives: parsed options, output channels, a client.

import { hostname, userInfo } from 'node:os';
import { ControlClient } from '../control/client.ts';
import { locateSocket } from './locate.ts';

export interface CliContext {
  args: string[]; // positional arguments after the verb
  flags: Record<string, string | boolean | undefined>;
  json: boolean;
  out: (s: string) => void;
  err: (s: string) => void;
}

export function clientFor(ctx: CliContext): ControlClient {
  return new ControlClient(
    locateSocket({ socket: ctx.flags['socket'] as string | undefined, config: ctx.flags['config'] as string | undefined }),
  );
}

/** The person and host behind an operation, recorded with each deployment. */
export function actor(via = 'cli'): string {
  const user = process.env['USER'] ?? process.env['LOGNAME'] ?? userInfo().username;
  const from = process.env['SSH_CONNECTION']?.split(' ')[0];
  return `${user}@${hostname()}${from ? ` from ${from}` : ''} (${via})`;
}
