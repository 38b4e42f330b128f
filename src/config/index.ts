// Loading baton.yaml: YAML (with positions) → shape check (zod) → cross-value
// rules → normalised DaemonConfig. Every problem found is reported at once, as
// "FILE:LINE:COL: path.to.key: what is wrong, what is expected".

import { readFile } from 'node:fs/promises';
import { LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { BatonError, errorMessage } from '../core/errors.ts';
import { normalise, resolvePaths } from './normalise.ts';
import { detailLines, type Problem } from './problems.ts';
import { checkRules } from './rules.ts';
import { configSchema, knownKeysAt } from './schema.ts';
import { suggestKey } from './suggest.ts';
import { syntaxProblems } from './yaml-syntax.ts';
import type { DaemonConfig } from './types.ts';

export type * from './types.ts';
export * from './defaults.ts';
export { parseDuration } from './duration.ts';

/** Reads and parses `file`; the path appears in messages as given. */
export async function loadConfig(file: string): Promise<DaemonConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : errorMessage(err);
    throw new BatonError('CONFIG_UNREADABLE', `${file}: cannot read the config file: ${reason}`);
  }
  return parseConfig(text, file);
}

/** Parses config text; `file` names it in messages and anchors relative paths. Throws CONFIG_INVALID. */
export function parseConfig(text: string, file: string): DaemonConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const fail = (problems: Problem[]): BatonError =>
    new BatonError(
      'CONFIG_INVALID',
      `${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}`,
      detailLines(problems, file, doc, lines),
    );

  // A document with syntax errors is not checked further: its shape is a guess.
  if (doc.errors.length > 0) {
    throw fail(syntaxProblems(text, doc.errors).map((e) => ({ path: [], offset: e.offset, message: e.message })));
  }
  let data: unknown;
  try {
    // maxAliasCount bounds alias expansion ("billion laughs").
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw fail([{ path: [], offset: 0, message: `invalid YAML: ${lowerFirst(errorMessage(err))}` }]);
  }
  if (data === null || data === undefined) {
    throw fail([{ path: [], offset: 0, message: 'the file is empty, expected at least a "services" mapping' }]);
  }

  const result = configSchema.safeParse(data);
  const problems = result.success ? [] : result.error.issues.flatMap(toProblems);
  problems.push(...checkRules(data, socketPathOf(data, file)));
  if (problems.length > 0 || !result.success) throw fail(problems);
  return normalise(result.data, file);
}

function toProblems(issue: z.core.$ZodIssue): Problem[] {
  if (issue.code !== 'unrecognized_keys') return [{ path: issue.path, message: issue.message }];
  const known = knownKeysAt(issue.path);
  return issue.keys.map((key) => {
    const suggestion = suggestKey(key, known);
    const hint = suggestion === undefined ? `expected one of ${known.join(', ')}` : `did you mean "${suggestion}"?`;
    return { path: [...issue.path, key], message: `unknown key (${hint})` };
  });
}

/** Where the control socket will be, if the values that decide it are usable. */
function socketPathOf(data: unknown, file: string): string | undefined {
  if (data === null || typeof data !== 'object') return undefined;
  const { state_dir: stateDir, control_socket: socket } = data as Record<string, unknown>;
  if ((stateDir !== undefined && typeof stateDir !== 'string') || (socket !== undefined && typeof socket !== 'string')) {
    return undefined;
  }
  return resolvePaths(file, stateDir, socket).controlSocket;
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

export { defaultService } from './normalise.ts';
