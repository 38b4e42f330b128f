// The daemon's signing key (sticky and beta cookies, beta links): made once,
// kept in the state directory (0600) so cookies stay valid across restarts.
// Because links outlive a restart, so must the record of which were used.

import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { BetaTokenLedger } from '../proxy/index.ts';
import type { Store } from '../store/index.ts';

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

/**
 * Used beta link tokens, kept in the store. If the store cannot be written the
 * link is refused: a link that might work twice is worse than one that fails.
 */
export function storedBetaTokens(store: Store, logger: Logger): BetaTokenLedger {
  return {
    claim(id, expiresAt) {
      try {
        return store.claimBetaToken(id, expiresAt);
      } catch (err) {
        logger.error('cannot record a used beta link; refusing it', { error: errorMessage(err) });
        return false;
      }
    },
  };
}
