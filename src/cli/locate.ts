// Finding the daemon's control socket from the CLI. Deliberately lenient: the
// CLI must reach the daemon even when the config file has just been broken by
// an edit (so `baton reload` can report the problem instead of failing here).

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { BatonError } from '../core/errors.ts';

export const DEFAULT_CONFIG = 'baton.yaml';

export function locateSocket(opts: { socket?: string; config?: string }): string {
  if (opts.socket) return path.resolve(opts.socket);
  if (process.env['BATON_SOCKET']) return path.resolve(process.env['BATON_SOCKET']);
  const file = path.resolve(opts.config ?? DEFAULT_CONFIG);
  if (!existsSync(file)) {
    throw new BatonError(
      'USAGE',
      opts.config
        ? `config file ${opts.config} not found`
        : `no ${DEFAULT_CONFIG} in ${process.cwd()}: pass --config FILE (the daemon's config) or --socket PATH`,
    );
  }
  const dir = path.dirname(file);
  let doc: unknown = null;
  try {
    doc = parse(readFileSync(file, 'utf8'));
  } catch {
    // An unparsable file: fall back to the defaults below.
  }
  const o = doc && typeof doc === 'object' ? (doc as Record<string, unknown>) : {};
  const stateDir = typeof o['state_dir'] === 'string' ? path.resolve(dir, o['state_dir']) : path.resolve(dir, 'state');
  return typeof o['control_socket'] === 'string' ? path.resolve(dir, o['control_socket']) : path.join(stateDir, 'baton.sock');
}
