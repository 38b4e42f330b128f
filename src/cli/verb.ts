// What a verb is: its name, positional arguments, flags and help text. The
// table of verbs (verbs.ts) is data of this shape; parsing, per-verb help,
// "did you mean" and shell completion are all derived from it, so a verb's
// flags are written down once.

import type { CliContext } from './context.ts';

export type Command = (ctx: CliContext) => Promise<number>;

/** What a shell may offer for a value: files, directories, the config's services (from `baton check --json`), or a fixed list. */
export type Completion = 'file' | 'dir' | 'service' | 'none' | readonly string[];

export interface FlagSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Placeholder of a string flag's value in help: FILE, REF, 24h… */
  value?: string;
  help: string;
  /** The only values a string flag takes (checked before the verb runs). */
  choices?: readonly string[];
  complete?: Completion;
}

export interface ArgSpec {
  /** Upper case in help: SERVICE, DIR. */
  name: string;
  optional?: boolean;
  /** The only values it takes (checked before the verb runs), e.g. on|off. */
  choices?: readonly string[];
  complete?: Completion;
}

export interface VerbSpec {
  /** One word, or two for a group of verbs ("fleet deploy"). */
  name: string;
  /** One line for the list of verbs. */
  summary: string;
  /** More lines for `baton VERB --help`. */
  help?: string;
  args: readonly ArgSpec[];
  flags: Readonly<Record<string, FlagSpec>>;
  /** Left out of the list of verbs and of completion (run by tools, not people). */
  hidden?: boolean;
  /** Loaded only when the verb runs, so `baton status` does not load the daemon. */
  load: () => Promise<Command>;
}

// Flags many verbs share; a verb lists the ones it accepts.

/** How the CLI finds the daemon. */
export const CONNECT_FLAGS = {
  config: { type: 'string', short: 'c', value: 'FILE', help: 'the daemon\'s config file (default: $BATON_CONFIG, ./baton.yaml, /etc/baton/baton.yaml)', complete: 'file' },
  socket: { type: 'string', value: 'PATH', help: 'the daemon\'s control socket (default: from the config file, or $BATON_SOCKET)', complete: 'file' },
} as const satisfies Record<string, FlagSpec>;

export const JSON_FLAG = {
  json: { type: 'boolean', help: 'print JSON (one object per line for streams) instead of text' },
} as const satisfies Record<string, FlagSpec>;

/** Accepted by every verb; not listed in each verb's flags. */
export const HELP_FLAG = {
  help: { type: 'boolean', short: 'h', help: 'show this help' },
} as const satisfies Record<string, FlagSpec>;
