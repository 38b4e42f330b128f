// `baton git-remote SERVICE`: a bare repository to push to, whose pre-receive
// hook deploys the pushed branch and streams the deploy to the pusher. The hook
// runs before git updates the branch, so a failed deploy rejects the push: the
// branch in that repository always names what is (or was last) deployed.

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BatonError, errorMessage } from '../../core/errors.ts';
import { selfCommand } from '../../core/self.ts';
import { locateSocket } from '../locate.ts';
import { stringFlag, type CliContext } from '../context.ts';


/** Single-quote for sh. */
function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function preReceiveHook(opts: { baton: string[]; socket: string; service: string; branch: string }): string {
  return `#!/bin/sh
# Installed by \`baton git-remote ${opts.service}\`: a push to ${opts.branch} deploys it.
# A failed deploy rejects the push. Other branches are accepted without deploying.
status=0
while read old new ref; do
  if [ "$ref" != ${sq(`refs/heads/${opts.branch}`)} ]; then continue; fi
  if [ "$new" = 0000000000000000000000000000000000000000 ]; then
    echo "baton: refusing to delete ${opts.branch}, the deployed branch of ${opts.service}"
    status=1
    continue
  fi
  ${opts.baton.map(sq).join(' ')} deploy-push ${sq(opts.service)} --git-dir "$PWD" --commit "$new" --ref ${sq(opts.branch)} --socket ${sq(opts.socket)} || status=1
done
exit $status
`;
}

export async function gitRemoteCommand(ctx: CliContext): Promise<number> {
  const [service, dirArg] = ctx.args;
  if (!service || !dirArg) throw new BatonError('USAGE', 'usage: baton git-remote SERVICE DIR [--branch main]');
  if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(service)) throw new BatonError('USAGE', `"${service}" is not a service name`);
  const branch = typeof ctx.flags['branch'] === 'string' ? ctx.flags['branch'] : 'main';
  if (!/^[A-Za-z0-9._/-]+$/.test(branch) || branch.startsWith('-') || branch.includes('..')) throw new BatonError('USAGE', `"${branch}" is not a branch name`);
  const dir = path.resolve(dirArg);
  const { socket } = locateSocket({ socket: stringFlag(ctx, 'socket'), config: stringFlag(ctx, 'config') });
  try {
    if (!existsSync(path.join(dir, 'HEAD'))) execFileSync('git', ['init', '--quiet', '--bare', '--initial-branch', branch, dir], { stdio: 'pipe' });
  } catch (err) {
    throw new BatonError('USAGE', `cannot create a bare repository at ${dir}: ${errorMessage(err)}`);
  }
  const hook = path.join(dir, 'hooks', 'pre-receive');
  await writeFile(hook, preReceiveHook({ baton: selfCommand(), socket, service, branch }));
  await chmod(hook, 0o755);
  ctx.out(
    `${dir}: pushes to ${branch} deploy ${service} (hook: ${hook})\n` +
      `add it as a remote:  git remote add production ${dir}   (or ssh://this-host${dir})\n` +
      `then deploy with:    git push production ${branch}\n`,
  );
  return 0;
}
