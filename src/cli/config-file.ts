// Finding the daemon's config file: --config, then $BATON_CONFIG, then
// ./baton.yaml, then /etc/baton/baton.yaml, each resolved against the caller's
// working directory. Apart from src/cli/locate.ts (the control socket, which
// reads the file with the YAML parser) because the daemon needs this and not
// that: the YAML parser would stay resident in the daemon for its whole life
// (the config itself is parsed in a short-lived child, src/config/isolated.ts).

import { existsSync } from 'node:fs';
import path from 'node:path';
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
