// `baton systemd [--user U] [--config FILE] [--install [--unit-dir DIR]]`:
// print (or write) the systemd unit that runs this baton's daemon.

import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BatonError, errorMessage } from '../../core/errors.ts';
import { selfCommand } from '../../core/self.ts';
import { renderUnit } from '../../daemon/systemd-unit.ts';
import type { CliContext } from '../context.ts';

const SYSTEM_CONFIG = '/etc/baton/baton.yaml';
const UNIT_DIR = '/etc/systemd/system';

export async function systemdCommand(ctx: CliContext): Promise<number> {
  if (ctx.args.length) throw new BatonError('USAGE', 'usage: baton systemd [--user USER] [--config FILE] [--install [--unit-dir DIR]]');
  const flag = (k: string): string | undefined => (typeof ctx.flags[k] === 'string' ? (ctx.flags[k] as string) : undefined);
  const config = path.resolve(flag('config') ?? process.env['BATON_CONFIG'] ?? SYSTEM_CONFIG);
  const user = flag('user');
  if (user !== undefined && !/^[a-z_][a-z0-9_-]{0,31}\$?$/i.test(user)) throw new BatonError('USAGE', `--user: "${user}" is not a user name`);
  const unit = renderUnit({ baton: selfCommand(), config, ...(user ? { user } : {}) });
  if (!ctx.flags['install']) {
    ctx.out(unit);
    return 0;
  }
  const dir = path.resolve(flag('unit-dir') ?? UNIT_DIR);
  const file = path.join(dir, 'baton.service');
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(file, unit, { mode: 0o644 });
  } catch (err) {
    throw new BatonError('USAGE', `cannot write ${file}: ${errorMessage(err)}`);
  }
  ctx.out(
    `wrote ${file}\n` +
      (existsSync(config) ? '' : `note: ${config} does not exist yet: write it before starting the service\n`) +
      'then:  systemctl daemon-reload && systemctl enable --now baton\n',
  );
  return 0;
}
