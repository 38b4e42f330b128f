// `baton completion bash|zsh`: print the completion script for that shell.

import { bashCompletion, zshCompletion } from '../completion.ts';
import { VERBS } from '../verbs.ts';
import type { CliContext } from '../context.ts';

export function completionCommand(ctx: CliContext): Promise<number> {
  // The verb table has already checked that the argument is bash or zsh.
  ctx.out(ctx.args[0] === 'zsh' ? zshCompletion(VERBS) : bashCompletion(VERBS));
  return Promise.resolve(0);
}
