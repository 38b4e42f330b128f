// `baton check`: validate a config file as the daemon would load it, without
// starting anything. Exit 0, or 1 with the same file:line:col messages the
// daemon (and `baton reload`) would give.

import path from 'node:path';
import { loadConfig } from '../../config/index.ts';
import { locateConfig } from '../config-file.ts';
import { stringFlag, type CliContext } from '../context.ts';

export async function checkCommand(ctx: CliContext): Promise<number> {
  const { file, via } = locateConfig(stringFlag(ctx, 'config'));
  const rel = path.relative(process.cwd(), file);
  const shown = rel.startsWith('..') || path.isAbsolute(rel) ? file : rel;
  const config = await loadConfig(shown);
  const services = config.services.map((s) => s.name);
  const fronts = config.fronts.map((f) => f.name);
  const all = [...services, ...fronts.map((f) => `${f} (front: ${config.fronts.find((x) => x.name === f)!.targets.length} targets)`)];
  if (ctx.json) ctx.out(JSON.stringify({ config: file, via, ok: true, services, ...(fronts.length > 0 ? { fronts } : {}) }) + '\n');
  else ctx.out(`${shown}: ok (${all.length} service${all.length === 1 ? '' : 's'}: ${all.join(', ')})\n`);
  return 0;
}
