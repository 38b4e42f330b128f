// The order hosts are switched in: canary hosts first (each held for the bake
// time), then batches of N (or N%) hosts at a time. The first host always
// switches alone: it runs the migrations, exactly once for the fleet, before
// any other host switches.

import type { BatchSize } from './config.ts';

export interface Batch {
  hosts: string[];
  canary: boolean;
}

export function batchHosts(size: BatchSize, total: number): number {
  return 'hosts' in size ? size.hosts : Math.max(1, Math.ceil((size.percent / 100) * total));
}

export function planBatches(hosts: readonly string[], opts: { canary: number; batch: BatchSize }): Batch[] {
  const out: Batch[] = [];
  const canary = Math.min(opts.canary, hosts.length);
  for (let i = 0; i < canary; i++) out.push({ hosts: [hosts[i]!], canary: true });
  let rest = hosts.slice(canary);
  if (canary === 0 && rest.length > 0) {
    out.push({ hosts: [rest[0]!], canary: false });
    rest = rest.slice(1);
  }
  const n = batchHosts(opts.batch, hosts.length);
  for (let i = 0; i < rest.length; i += n) out.push({ hosts: rest.slice(i, i + n), canary: false });
  return out;
}

export function describePlan(batches: readonly Batch[]): string[] {
  return batches.map((b, i) => `  ${b.canary ? 'canary' : `batch ${i + 1}`}: ${b.hosts.join(', ')}${i === 0 ? '  (runs the migrations)' : ''}`);
}
