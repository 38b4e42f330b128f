// The child process of loadConfigIsolated(): load one config file, print
// { config } or { error } as JSON on stdout.

import { errorMessage, isBatonError } from '../core/errors.ts';
import { loadConfig } from './index.ts';

// No top-level await: the single executable bundles this file as CommonJS.
async function answer(file: string): Promise<void> {
  try {
    process.stdout.write(JSON.stringify({ config: await loadConfig(file) }));
  } catch (err) {
    const error = isBatonError(err) ? err.toJSON() : { code: 'INTERNAL', message: errorMessage(err), details: [] };
    process.stdout.write(JSON.stringify({ error }));
  }
}

void answer(process.argv[2] ?? '');
