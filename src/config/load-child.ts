// The child process of loadConfigIsolated(): load one config file, print
// { config } or { error } as JSON on stdout.

import { errorMessage, isBatonError } from '../core/errors.ts';
import { loadConfig } from './index.ts';

const file = process.argv[2] ?? '';
try {
  process.stdout.write(JSON.stringify({ config: await loadConfig(file) }));
} catch (err) {
  const error = isBatonError(err) ? err.toJSON() : { code: 'INTERNAL', message: errorMessage(err), details: [] };
  process.stdout.write(JSON.stringify({ error }));
}
