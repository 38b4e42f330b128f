// Finding the daemon's control socket from the CLI: --socket, then
// $BATON_SOCKET, then what the config file (src/cli/config-file.ts) names.
// Deliberately lenient about the file's content: the CLI must reach the daemon
// even when the config has just been broken by an edit (so `baton reload` can
// report the problem instead of failing here).

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { locateConfig, type ConfigChoice } from './config-file.ts';

export interface SocketChoice {
  socket: string;
  /** The config file the socket was read from; null when given by --socket or $BATON_SOCKET. */
  config: ConfigChoice | null;
}

export function locateSocket(opts: { socket?: string; config?: string }, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): SocketChoice {
  if (opts.socket) {
    // The socket is given; a config file given too still names the daemon in messages.
    const file = opts.config === undefined ? null : path.resolve(cwd, opts.config);
    return { socket: path.resolve(cwd, opts.socket), config: file && existsSync(file) ? { file, via: '--config' } : null };
  }
  if (opts.config === undefined && env['BATON_SOCKET']) return { socket: path.resolve(cwd, env['BATON_SOCKET']), config: null };
  const config = locateConfig(opts.config, env, cwd);
  const dir = path.dirname(config.file);
  let doc: unknown = null;
  try {
    doc = parse(readFileSync(config.file, 'utf8'));
  } catch {
    // An unparsable file: fall back to the defaults below.
  }
  const o = doc && typeof doc === 'object' ? (doc as Record<string, unknown>) : {};
  const stateDir = typeof o['state_dir'] === 'string' ? path.resolve(dir, o['state_dir']) : path.resolve(dir, 'state');
  const socket = typeof o['control_socket'] === 'string' ? path.resolve(dir, o['control_socket']) : path.join(stateDir, 'baton.sock');
  return { socket, config };
}
