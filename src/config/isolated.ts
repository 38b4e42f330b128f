// Loading the config in a short-lived child process. The daemon reads its
// config at start and on reload only, but the YAML parser and the schema
// validator would stay resident for its whole life (~18 MB, a quarter of its
// memory): the child parses and validates, prints the normalised config as
// JSON, and exits.

import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BatonError, type ErrorCode } from '../core/errors.ts';
import { CONFIG_CHILD_MODE, inExecutable } from '../core/self.ts';
import type { DaemonConfig } from './types.ts';

/** argv of the child: the single executable re-executes itself in the loader mode. */
function childArgs(file: string): string[] {
  if (inExecutable()) return [CONFIG_CHILD_MODE, file];
  return [fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './load-child.ts' : './load-child.js', import.meta.url)), file];
}

export function loadConfigIsolated(file: string): Promise<DaemonConfig> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, childArgs(file), { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      let answer: { config?: DaemonConfig; error?: { code: ErrorCode; message: string; details: string[] } };
      try {
        answer = JSON.parse(stdout) as typeof answer;
      } catch {
        reject(new BatonError('INTERNAL', `loading ${file} failed: ${err?.message ?? 'no answer'} ${stderr.trim().split('\n').slice(-3).join(' ')}`));
        return;
      }
      if (answer.config) resolve(answer.config);
      else reject(new BatonError(answer.error?.code ?? 'INTERNAL', answer.error?.message ?? `loading ${file} failed`, answer.error?.details ?? []));
    });
  });
}
