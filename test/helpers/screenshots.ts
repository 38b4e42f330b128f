// Where the browser tests write their screenshots. Only when asked
// (BATON_SCREENSHOTS=1, as the README says next to them) do they go to
// docs/screenshots/, which the README shows; otherwise to a temporary
// directory removed at the end, so a test run leaves the working tree clean.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const DOCS_SCREENSHOTS = path.resolve(import.meta.dirname, '../../docs/screenshots');

/** The directory to write into, and what to call when done (removes a temporary one). */
export function screenshotDir(): { dir: string; done: () => void } {
  if (process.env['BATON_SCREENSHOTS'] === '1') {
    mkdirSync(DOCS_SCREENSHOTS, { recursive: true });
    return { dir: DOCS_SCREENSHOTS, done: () => {} };
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'baton-shots-'));
  return { dir, done: () => rmSync(dir, { recursive: true, force: true }) };
}
