// Finding the daemon's config file and control socket from the CLI.
//
// The config file: --config, then $BATON_CONFIG, then ./baton.yaml, then
// /etc/baton/baton.yaml, each resolved against the caller's working directory.
// The socket: --socket, then $BATON_SOCKET, then what that config file names.
// Deliberately lenient about the file's content: the CLI must reach the daemon
// even when the config has just been broken by an edit (so `baton reload` can
// report the problem instead of failing here).

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { BatonError } from '../core/errors.ts';

export const LOCAL_CONFIG = 'baton.yaml';
export const SYSTEM_CONFIG = '/etc/baton/baton.yaml';

export interface ConfigChoice {
  /** Absolute path. */
  file: string;
  /** How it was chosen, for messages: "--config", "$BATON_CONFIG", "./baton.yaml", "/etc/baton/baton.yaml". */
  via: string;
}

/** The config file the CLI uses; a named file (--config, $BATON_CONFIG) that does not exist is an error. */
export function locateConfig(flag: string | undefined, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd(), systemConfig = SYSTEM_CONFIG): ConfigChoice {
  if (flag !== undefined) return named(flag, '--config', cwd);
  const fromEnv = env['BATON_CONFIG'];
  if (fromEnv) return named(fromEnv, '$BATON_CONFIG', cwd);
  const local = path.resolve(cwd, LOCAL_CONFIG);
  if (existsSync(local)) return { file: local, via: `./${LOCAL_CONFIG}` };
  if (existsSync(systemConfig)) return { file: systemConfig, via: systemConfig };
  throw new BatonError(
    'USAGE',
    `no config file: no --config, no $BATON_CONFIG, no ${LOCAL_CONFIG} in ${cwd} and no ${systemConfig}; pass --config FILE (the daemon's config) or --socket PATH`,
  );
}

function named(given: string, via: string, cwd: string): ConfigChoice {
  const file = path.resolve(cwd, given);
  if (!existsSync(file)) throw new BatonError('USAGE', `config file ${given} (from ${via}) not found${file === given ? '' : ` (looked for ${file})`}`);
  return { file, via };
}

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
