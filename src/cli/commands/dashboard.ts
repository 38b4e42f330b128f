// `baton dashboard`: ask the daemon for a one-time sign-in link to its web
// dashboard, print it, and open it when this session has a display.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { BatonError } from '../../core/errors.ts';
import { formatDuration } from '../../core/time.ts';
import { parseDuration } from '../../config/duration.ts';
import { remoteFromEnv } from '../../control/client.ts';
import { clientFor, type CliContext } from '../context.ts';

const XDG_OPEN = '/usr/bin/xdg-open';

export async function dashboardCommand(ctx: CliContext): Promise<number> {
  if (ctx.args.length > 0) throw new BatonError('USAGE', 'usage: baton dashboard [--ttl 2m] [--json]');
  const ttlText = typeof ctx.flags['ttl'] === 'string' ? ctx.flags['ttl'] : undefined;
  const ttlMs = ttlText === undefined ? undefined : parseDuration(ttlText);
  if (ttlText !== undefined && (ttlMs === undefined || ttlMs < 1000 || ttlMs > 10 * 60_000)) {
    throw new BatonError('USAGE', `--ttl must be a duration from 1s to 10m, got "${ttlText}"`);
  }
  const r = await clientFor(ctx).post<{ url: string; expiresAt: number }>('/dashboard/login', ttlMs === undefined ? {} : { ttlMs });
  if (ctx.json) {
    ctx.out(JSON.stringify(r) + '\n');
    return 0;
  }
  // With BATON_REMOTE the link is for the dashboard mounted on the daemon's TLS control listener.
  const where = remoteFromEnv() !== null ? 'over TLS, served by the daemon\'s control listener' : 'from another machine: ssh -L PORT:127.0.0.1:PORT this host, then open it there';
  ctx.out(`${r.url}\n(signs one browser in, once, within ${formatDuration(r.expiresAt - Date.now())}; ${where})\n`);
  // Only where a browser can show up: a terminal over ssh has no display.
  if ((process.env['DISPLAY'] || process.env['WAYLAND_DISPLAY']) && existsSync(XDG_OPEN)) {
    const child = spawn(XDG_OPEN, [r.url], { detached: true, stdio: 'ignore' });
    child.on('error', () => {});
    child.unref();
  }
  return 0;
}
