// The daemon's signing key (sticky and beta cookies, beta links): made once,
// kept in the state directory (0600) so cookies stay valid across restarts.

import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

export async function loadSecret(stateDir: string): Promise<string> {
  const file = path.join(stateDir, 'secret');
  try {
    const text = (await readFile(file, 'utf8')).trim();
    if (/^[0-9a-f]{64}$/.test(text)) return text;
  } catch {
    // not there yet
  }
  const secret = randomBytes(32).toString('hex');
  await writeFile(file, secret + '\n', { mode: 0o600 });
  return secret;
}
