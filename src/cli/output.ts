// Formatting for humans: tables, ages, deploy progress lines.

import type { DeployOutcome } from '../core/deployment.ts';
import { formatDuration } from '../core/time.ts';
import type { StreamLine } from '../control/protocol.ts';

export function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ').trimEnd()).join('\n');
}

export function ago(epochMs: number | null, now = Date.now()): string {
  if (epochMs === null) return '-';
  return `${formatDuration(Math.max(0, now - epochMs))} ago`;
}

export function when(epochMs: number | null): string {
  return epochMs === null ? '-' : new Date(epochMs).toISOString().replace('T', ' ').slice(0, 19);
}

const MARK = { step: '▸', info: ' ', warn: '!', error: '✗', output: '|' } as const;

/** One line per deployment event, with the time since the operation began. */
export function progressPrinter(write: (s: string) => void): (line: StreamLine) => void {
  let t0: number | null = null;
  return (line) => {
    if (line.type !== 'event') return;
    const e = line.event;
    t0 ??= e.at;
    const clock = `+${((e.at - t0) / 1000).toFixed(1)}s`.padStart(7);
    if (e.type === 'output') {
      write(`${' '.repeat(19)}| ${e.message}\n`);
      return;
    }
    const step = e.type === 'step' ? e.step.padEnd(10) : ''.padEnd(10);
    write(`${clock} ${MARK[e.type]} ${step} ${e.message}\n`);
    for (const d of e.details ?? []) write(`${' '.repeat(21)}| ${d}\n`);
  };
}

export function outcomeSummary(o: DeployOutcome): string {
  const verb = { deploy: 'deploy', rollback: 'rollback', restart: 'restart' }[o.kind];
  const traffic = `${o.requests} request(s) answered during the ${verb}: ${o.failed} failed in baton${o.retries ? ` (${o.retries} retried)` : ''}, ${o.appErrors} answered 5xx by the app`;
  if (o.state === 'switched') {
    return `✓ ${verb} #${o.seq} of ${o.service} to ${o.toRelease}: traffic switched at +${formatDuration(o.switchAfterMs ?? o.durationMs)}; the old instances drain in the daemon (\`baton status ${o.service}\`)\n  ${traffic}`;
  }
  if (o.state === 'done') {
    const sw = o.switchAfterMs === null ? '' : `, traffic switched at +${formatDuration(o.switchAfterMs)}`;
    return `✓ ${verb} #${o.seq} of ${o.service} to ${o.toRelease} done in ${formatDuration(o.durationMs)}${sw}\n  ${traffic}`;
  }
  return `✗ ${verb} #${o.seq} of ${o.service} to ${o.toRelease} failed after ${formatDuration(o.durationMs)}: ${o.error?.message ?? o.state}\n  ${o.fromRelease ?? 'nothing'} keeps serving; ${traffic}`;
}
