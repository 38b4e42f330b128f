// Command line → verb, positional arguments and flags, checked against the
// verb's entry in the table; help texts derived from the same entries.

import { parseArgs } from 'node:util';
import { BatonError } from '../core/errors.ts';
import { VERSION } from '../core/version.ts';
import { editDistance } from '../config/suggest.ts';
import { HELP_FLAG, type FlagSpec, type VerbSpec } from './verb.ts';

export type Flags = Record<string, string | boolean | undefined>;

export type Parsed =
  | { kind: 'version' }
  | { kind: 'help'; verb: VerbSpec | null; group: string | null }
  | { kind: 'run'; verb: VerbSpec; args: string[]; flags: Flags };

/** Flags given before the verb (`baton --config F status`) that take a value. */
const VALUE_FLAGS_BEFORE_VERB = new Set(['--config', '-c', '--socket']);

function usageError(message: string, verb: VerbSpec | null): BatonError {
  const see = verb ? `see \`baton ${verb.name} --help\`` : 'see `baton help`';
  return new BatonError('USAGE', `${message} (${see})`);
}

/** The verb a command line names, with the index of its first token and its length in words. */
function findVerb(argv: string[], verbs: readonly VerbSpec[]): { at: number; words: string[] } | null {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return null;
    if (VALUE_FLAGS_BEFORE_VERB.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    const next = argv[i + 1];
    if (next !== undefined && verbs.some((v) => v.name === `${a} ${next}`)) return { at: i, words: [a, next] };
    return { at: i, words: [a] };
  }
  return null;
}

export function parseCommandLine(argv: string[], verbs: readonly VerbSpec[]): Parsed {
  const found = findVerb(argv, verbs);
  const before = found ? argv.slice(0, found.at) : argv;
  if (before.includes('--version') || before.includes('-V')) return { kind: 'version' };
  if (!found) {
    if (before.includes('--help') || before.includes('-h') || argv.length === 0) return { kind: 'help', verb: null, group: null };
    throw usageError(`no command given`, null);
  }
  const name = found.words.join(' ');
  if (name === 'help') {
    const rest = argv.slice(found.at + 1).filter((a) => !a.startsWith('-'));
    if (rest.length === 0) return { kind: 'help', verb: null, group: null };
    return { kind: 'help', ...lookup(rest.slice(0, 2), verbs) };
  }
  const verb = verbs.find((v) => v.name === name);
  if (!verb) {
    const group = verbs.filter((v) => v.name.startsWith(`${name} `));
    if (group.length > 0) {
      const wanted = argv[found.at + 1];
      if (wanted === undefined || wanted.startsWith('-')) return { kind: 'help', verb: null, group: name };
      throw usageError(`unknown command "${name} ${wanted}"${didYouMean(wanted, group.map((v) => v.name.split(' ')[1]!), `${name} `)}`, null);
    }
    throw usageError(`unknown command "${name}"${didYouMean(name, verbs.filter((v) => !v.hidden).map((v) => v.name.split(' ')[0]!))}`, null);
  }
  const rest = [...before, ...argv.slice(found.at + found.words.length)];
  return parseVerb(verb, rest);
}

function lookup(words: string[], verbs: readonly VerbSpec[]): { verb: VerbSpec | null; group: string | null } {
  const two = verbs.find((v) => v.name === words.join(' '));
  if (two) return { verb: two, group: null };
  const one = verbs.find((v) => v.name === words[0]);
  if (one) return { verb: one, group: null };
  if (verbs.some((v) => v.name.startsWith(`${words[0]} `))) return { verb: null, group: words[0]! };
  throw usageError(`unknown command "${words[0]}"${didYouMean(words[0]!, verbs.filter((v) => !v.hidden).map((v) => v.name.split(' ')[0]!))}`, null);
}

/** `; did you mean "status"?` when one known word is close enough (shown after `prefix`), else ''. */
export function didYouMean(word: string, known: readonly string[], prefix = ''): string {
  const unique = [...new Set(known)];
  const prefixed = unique.filter((k) => k.startsWith(word));
  if (word.length >= 2 && prefixed.length === 1) return `; did you mean "${prefix}${prefixed[0]}"?`;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of unique) {
    const d = editDistance(word, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? `; did you mean "${prefix}${best}"?` : '';
}

function flagName(name: string, spec: FlagSpec): string {
  return spec.type === 'string' ? `--${name} ${spec.value ?? 'VALUE'}` : `--${name}`;
}

function parseVerb(verb: VerbSpec, argv: string[]): Parsed {
  const flags: Record<string, FlagSpec> = { ...verb.flags, ...HELP_FLAG };
  const options = Object.fromEntries(
    Object.entries(flags).map(([name, f]) => [name, f.short ? { type: f.type, short: f.short } : { type: f.type }]),
  );
  // strict: false, so that an unknown flag is reported here with the verb's name
  // and the flags it does take, rather than by parseArgs' generic message.
  const { tokens } = parseArgs({ args: argv, options, allowPositionals: true, strict: false, tokens: true });
  const values: Flags = {};
  const args: string[] = [];
  for (const t of tokens) {
    if (t.kind === 'positional') {
      args.push(t.value);
      continue;
    }
    if (t.kind === 'option-terminator') continue;
    const spec = flags[t.name];
    if (!spec) {
      const accepted = Object.keys(verb.flags).map((n) => `--${n}`);
      const hint = didYouMean(t.name, Object.keys(verb.flags));
      throw usageError(
        `${verb.name} does not take ${t.rawName}${hint ? hint.replace(/"([^"]+)"/, '"--$1"') : ''}; it takes ${accepted.length ? accepted.join(', ') : 'no flags'}`,
        verb,
      );
    }
    if (spec.type === 'boolean') {
      if (t.inlineValue) throw usageError(`${t.rawName} takes no value (got "${t.value ?? ''}")`, verb);
      values[t.name] = true;
      continue;
    }
    if (t.value === undefined) throw usageError(`${t.rawName} needs a value: ${flagName(t.name, spec)}`, verb);
    // `--ref --json`: a forgotten value, not a ref named "--json" (`--ref=-x` still gives one).
    if (!t.inlineValue && t.value.startsWith('-')) throw usageError(`${t.rawName} needs a value, got the flag ${t.value} (write ${t.rawName}=${t.value} if that is the value)`, verb);
    if (spec.choices && !spec.choices.includes(t.value)) {
      throw usageError(`${t.rawName} must be one of ${spec.choices.join(', ')}; got "${t.value}"`, verb);
    }
    values[t.name] = t.value;
  }
  if (values['help'] === true) return { kind: 'help', verb, group: null };
  const required = verb.args.filter((a) => !a.optional).length;
  if (args.length < required) {
    const missing = verb.args.slice(args.length).filter((a) => !a.optional).map((a) => a.name);
    throw usageError(`${verb.name} needs ${missing.join(' and ')}: ${synopsis(verb)}`, verb);
  }
  if (args.length > verb.args.length) {
    throw usageError(`${verb.name} takes ${verb.args.length === 0 ? 'no arguments' : `at most ${verb.args.length} argument${verb.args.length === 1 ? '' : 's'} (${synopsis(verb, false)})`}; unexpected "${args[verb.args.length]}"`, verb);
  }
  verb.args.forEach((a, i) => {
    const v = args[i];
    if (v !== undefined && a.choices && !a.choices.includes(v)) {
      throw usageError(`${verb.name}: ${a.name} must be ${a.choices.join(' or ')}; got "${v}"`, verb);
    }
  });
  return { kind: 'run', verb, args, flags: values };
}

/** `baton deploy SERVICE [DIR] [--ref REF] …` */
export function synopsis(verb: VerbSpec, withFlags = true): string {
  const args = verb.args.map((a) => {
    const shown = a.choices ? a.choices.join('|') : a.name;
    return a.optional ? `[${shown}]` : shown;
  });
  const flags = withFlags ? Object.entries(verb.flags).map(([n, f]) => `[${flagName(n, f)}]`) : [];
  return ['baton', verb.name, ...args, ...flags].join(' ');
}

/** `baton VERB --help`. */
export function verbHelp(verb: VerbSpec): string {
  const lines = [`usage: ${synopsis(verb)}`, '', verb.summary];
  if (verb.help) lines.push('', ...verb.help.split('\n'));
  const flags = Object.entries<FlagSpec>({ ...verb.flags, ...HELP_FLAG });
  const rows = flags.map(([n, f]) => [`${f.short ? `-${f.short}, ` : '    '}${flagName(n, f)}`, f.help + (f.choices ? ` (${f.choices.join(' | ')})` : '')]);
  const width = Math.max(...rows.map((r) => r[0]!.length));
  lines.push('', 'flags:', ...rows.map(([a, b]) => `  ${a!.padEnd(width)}  ${b}`));
  return lines.join('\n') + '\n';
}

/** `baton help`: every verb (or every verb of a group) with its summary. */
export function overview(verbs: readonly VerbSpec[], group: string | null = null): string {
  const shown = verbs.filter((v) => !v.hidden && (group === null || v.name.startsWith(`${group} `)));
  const width = Math.max(...shown.map((v) => v.name.length));
  return [
    `baton ${VERSION}: zero-downtime deploys for web apps`,
    '',
    `usage: baton ${group ? `${group} ` : ''}COMMAND [ARGS] [FLAGS]`,
    '',
    ...shown.map((v) => `  ${v.name.padEnd(width)}  ${v.summary}`),
    '',
    '`baton help COMMAND` (or `baton COMMAND --help`) shows its arguments and flags.',
    'The CLI finds the daemon through its config file: --config FILE, $BATON_CONFIG, ./baton.yaml, /etc/baton/baton.yaml.',
  ].join('\n') + '\n';
}
