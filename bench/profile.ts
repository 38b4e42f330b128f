// CPU profile of the daemon's proxy path: a real daemon (one instance of the
// fixture app) run with --cpu-prof, under wrk -t1 -c50 for 10 s (pinned as in
// proxy.ts), then the profile's top functions by self time, by inclusive time,
// and the busy time split by where the code lives (baton src, undici, Node's
// http/net/streams, GC). Not part of `npm run bench`; a tool to see where the
// proxy's CPU goes.
//
//   node bench/profile.ts [--seconds S] [--top N] [--keep DIR] [--no-pin]   (needs wrk)

import { mkdtempSync, readdirSync, readFileSync, cpSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createDaemon } from '../test/helpers/daemon.ts';
import { NCPU, WRK_MISSING, fixtureService, fmt, hasTaskset, hasWrk, machineLine, mdTable, pin, registerDaemon, runBench, runWrk, cleanupAll, writeDaemonConfig } from './lib.ts';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '10' }, top: { type: 'string', default: '25' }, keep: { type: 'string' }, 'no-pin': { type: 'boolean', default: false } },
});
const SECONDS = Number(values.seconds);
const TOP = Number(values.top);
// V8's profiler samples wall time: pinned on one CPU with the app, the daemon's
// time preempted inside a socket write (waking the app) is counted in that write.
// --no-pin lets the daemon and the app run on different CPUs.
const PIN = !values['no-pin'] && hasTaskset && NCPU >= 2;

interface CpuNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

function where(url: string, fn: string): string {
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)' || fn === '(idle)' || fn === '(root)') return fn;
  if (url.includes('/node_modules/undici/')) return 'undici (npm)';
  if (url.includes('/src/proxy/')) return 'baton src/proxy';
  if (url.includes('/src/')) return 'baton src (other)';
  if (/node:(_http|http)/.test(url)) return 'node http';
  if (/node:(net|internal\/stream_base|internal\/net|internal\/dns)/.test(url)) return 'node net';
  if (/node:(internal\/streams|stream)/.test(url)) return 'node streams';
  if (url.startsWith('node:') || url === '') return url === '' ? 'native / V8 builtins' : 'node (other)';
  return 'other';
}

async function main(): Promise<boolean> {
  console.log(`# daemon CPU profile under wrk\n\n${machineLine()}`);
  if (!hasWrk) {
    console.error(WRK_MISSING);
    return false;
  }
  const profDir = mkdtempSync(path.join(os.tmpdir(), 'baton-prof-'));
  process.env['NODE_OPTIONS'] = `${process.env['NODE_OPTIONS'] ?? ''} --cpu-prof --cpu-prof-dir=${profDir}`.trim();
  const td = await createDaemon({ start: false });
  registerDaemon(td);
  writeDaemonConfig(td, fixtureService('web', { instances: 1 }), 'info');
  await td.start();
  const daemonPid = td.proc.pid!;
  if (PIN) pin(daemonPid, '0');
  const dep = await td.cli(['deploy', 'web', await td.release('v1')]);
  if (dep.code !== 0) throw new Error(`deploy failed: ${dep.stdout}${dep.stderr}`);
  const inst = (await td.status('web')).services[0].instances[0];
  if (PIN) pin(inst.pid, '0');
  await runWrk(`${td.url}/`, { connections: 50, seconds: 2, cpus: PIN ? '1' : null });
  const w = await runWrk(`${td.url}/`, { connections: 50, seconds: SECONDS, cpus: PIN ? '1' : null });
  console.log(`wrk through baton: ${fmt(w.rps, 0)} req/s, p99 ${fmt(w.p99Ms)} ms (the profiler slows the daemon down)`);
  await cleanupAll(); // a graceful shutdown writes the profile
  const file = readdirSync(profDir).find((f) => f.includes(`.${daemonPid}.`));
  if (!file) throw new Error(`no profile of the daemon (pid ${daemonPid}) in ${profDir}`);
  if (values.keep) cpSync(path.join(profDir, file), path.join(values.keep, 'daemon.cpuprofile'));

  const prof = JSON.parse(readFileSync(path.join(profDir, file), 'utf8')) as { nodes: CpuNode[]; samples: number[]; startTime: number; endTime: number };
  const msPerSample = (prof.endTime - prof.startTime) / 1000 / prof.samples.length;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const hits = new Map<number, number>();
  for (const s of prof.samples) hits.set(s, (hits.get(s) ?? 0) + 1);
  const key = (n: CpuNode): string => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^file:\/\/.*?\/(src|node_modules)\//, '$1/')}:${n.callFrame.lineNumber + 1}`;
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  const groups = new Map<string, number>();
  let idle = 0;
  let total = 0;
  const walk = (id: number, onStack: Set<string>): number => {
    const n = byId.get(id)!;
    const k = key(n);
    const h = hits.get(id) ?? 0;
    const fn = n.callFrame.functionName;
    if (fn === '(idle)') idle += h;
    else {
      self.set(k, (self.get(k) ?? 0) + h);
      const g = where(n.callFrame.url, fn);
      groups.set(g, (groups.get(g) ?? 0) + h);
    }
    total += h;
    const fresh = !onStack.has(k);
    if (fresh) onStack.add(k);
    let sub = fn === '(idle)' ? 0 : h;
    for (const c of n.children ?? []) sub += walk(c, onStack);
    if (fresh) {
      onStack.delete(k);
      if (fn !== '(root)') incl.set(k, (incl.get(k) ?? 0) + sub);
    }
    return sub;
  };
  walk(prof.nodes[0]!.id, new Set());
  const busy = total - idle;
  const pct = (h: number): string => `${((100 * h) / busy).toFixed(1)}%`;
  console.log(`\nprofile: ${fmt((total * msPerSample) / 1000, 1)} s sampled, busy ${fmt((busy * msPerSample) / 1000, 1)} s (${fmt((100 * busy) / total, 0)}%); percentages are of busy time`);
  console.log('\n## Busy time by where the code lives\n');
  console.log(mdTable([['where', 'self %'], ...[...groups].sort((a, b) => b[1] - a[1]).map(([g, h]) => [g, pct(h)])]));
  console.log(`\n## Top ${TOP} functions by self time\n`);
  console.log(mdTable([['function', 'self %'], ...[...self].sort((a, b) => b[1] - a[1]).slice(0, TOP).map(([k, h]) => [k, pct(h)])]));
  console.log(`\n## Top ${TOP} baton/undici functions by inclusive time\n`);
  console.log(mdTable([['function', 'inclusive %'], ...[...incl].filter(([k]) => /(src|node_modules)\//.test(k)).sort((a, b) => b[1] - a[1]).slice(0, TOP).map(([k, h]) => [k, pct(h)])]));
  if (values.keep) console.log(`\nprofile kept as ${path.join(values.keep, 'daemon.cpuprofile')} (open in Chrome DevTools)`);
  return true;
}

await runBench('profile', 5 * 60_000, main);
