// What the remote control listener reads at start: its certificate and key,
// and the token, from a file only its owner may read (a token in the config
// file itself would end up in backups, diffs and `baton reload` output).

import { readFile, stat } from 'node:fs/promises';
import { BatonError, errorMessage } from '../core/errors.ts';

/** Shortest token accepted: 32 characters (e.g. `openssl rand -hex 32` gives 64). */
export const MIN_TOKEN_LENGTH = 32;

export async function readControlToken(file: string): Promise<string> {
  let mode: number;
  let text: string;
  try {
    mode = (await stat(file)).mode;
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new BatonError('CONFIG_INVALID', `control.remote.token_file ${file}: cannot read it: ${errorMessage(err)}`);
  }
  if ((mode & 0o077) !== 0) {
    throw new BatonError('CONFIG_INVALID', `control.remote.token_file ${file} is readable by others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}), expected 0600: chmod 600 ${file}`);
  }
  const token = text.trim();
  if (token.length < MIN_TOKEN_LENGTH || /\s/.test(token)) {
    throw new BatonError('CONFIG_INVALID', `control.remote.token_file ${file}: expected one token of at least ${MIN_TOKEN_LENGTH} characters without spaces (e.g. \`openssl rand -hex 32\`)`);
  }
  return token;
}

export async function readControlKeyPair(certFile: string, keyFile: string): Promise<{ cert: string; key: string }> {
  try {
    return { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8') };
  } catch (err) {
    throw new BatonError('TLS_CERT_UNREADABLE', `control.remote: cannot read ${certFile} / ${keyFile}: ${errorMessage(err)}`);
  }
}
