// Daemon memory: VmRSS of the daemon process (/proc/PID/status) with 3 services
// × 2 instances of the fixture app, idle and then under 1 minute of load spread
// over the 3 services (routed by Host header). Baselines from the same run: the
// daemon before any service runs, and one app instance (a plain Node process).
//
// Targets (issue 13): idle after traffic ≤ 80 MB with 3 services × 2 instances,
// peak ≤ 100 MB under the load, and back within 10 MB of idle a minute after it.
// `--probe`: the daemon also reports where its memory is, from inside
// (bench/memory-probe.mjs: V8's heap, external memory, glibc's heap, other
// anonymous and file-backed pages), at idle, at the end of the load and a minute after.
//
// `--node-pages`: at idle after traffic, which parts of the node binary the
// daemon and one app instance have resident (bench/node-pages.ts).
// `--bin PATH`: another checkout's bin/baton.js (built) for the daemon and the CLI,
// for a "before" figure from the same command.
//
//   node bench/memory.ts [--quick] [--seconds S] [--probe] [--node-pages] [--bin ../before/bin/baton.js] [--daemon-node-options=--max-old-space-size=64]

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createDaemon } from '../test/helpers/daemon.ts';
import { startLoad, type LoadResult } from '../test/helpers/load.ts';
import { nodePagesTable } from './node-pages.ts';
import { fixtureService, fmt, machineLine, mb, mdTable, median, onCleanup, QUICK, ratio, registerDaemon, rssKb, runBench, sleep, verdict, writeDaemonConfig } from './lib.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    seconds: { type: 'string' },
    // Extra Node flags for the daemon, to try memory settings. Passed through NODE_OPTIONS,
    // so the CLI runs and the instances get them too; flags bin/baton.js puts on the
    // daemon's command line (its semi-space) win over these.
    'daemon-node-options': { type: 'string' },
    probe: { type: 'boolean', default: false },
    // After the last sample: gdb makes the daemon call glibc's malloc_trim(0), and
    // the RSS is sampled again: how much of what stayed is memory malloc holds free.
    'gdb-trim': { type: 'boolean', default: false },
    bin: { type: 'string' },
    'node-pages': { type: 'boolean', default: false },
  },
});
const LOAD_SECONDS = Number(values.seconds ?? (QUICK ? 10 : 60));
const IDLE_TARGET_MB = 80;
const PEAK_TARGET_MB = 100;
const BACK_WITHIN_MB = 10;
const SERVICES = ['alpha', 'beta', 'gamma'];
const host = (s: string): string => `${s}.bench.test`;

async function sampleRss(pid: number, n: number, everyMs: number): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = rssKb(pid);
    if (r !== null) xs.push(r);
    if (i < n - 1) await sleep(everyMs);
  }
  return median(xs);
}

interface Probe {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  v8Physical: number;
  v8Malloced: number;
  spaces: Record<string, number>;
  smaps: { heap: number; anon: number; file: number; stack: number; other: number; anonMappings: number; nodeText: number; nodeRead: number };
}

/** Anonymous mappings of a process with their resident kB, keyed by address range (/proc/PID/smaps). */
function anonMappings(pid: number): Map<string, { sizeKb: number; rssKb: number }> {
  const out = new Map<string, { sizeKb: number; rssKb: number }>();
  let cur: { sizeKb: number; rssKb: number } | null = null;
  let text = '';
  try {
    text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head !== null) {
      cur = head[3] === '' ? { sizeKb: 0, rssKb: 0 } : null;
      if (cur !== null) out.set(`${head[1]}-${head[2]}`, cur);
      continue;
    }
    if (cur === null) continue;
    if (line.startsWith('Size:')) cur.sizeKb = Number(line.slice(5).trim().split(' ')[0]);
    else if (line.startsWith('Rss:')) cur.rssKb = Number(line.slice(4).trim().split(' ')[0]);
  }
  return out;
}

/** The anonymous mappings whose resident size moved by ≥ 512 kB between two snapshots. */
function printAnonDiff(a: Map<string, { sizeKb: number; rssKb: number }>, b: Map<string, { sizeKb: number; rssKb: number }>, what: string): void {
  const rows: string[][] = [];
  for (const k of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(k)?.rssKb ?? 0;
    const y = b.get(k)?.rssKb ?? 0;
    if (Math.abs(y - x) >= 512) rows.push([k, mb(b.get(k)?.sizeKb ?? a.get(k)!.sizeKb), mb(x), mb(y), mb(y - x)]);
  }
  console.log(`\nAnonymous mappings whose RSS moved ≥ 0.5 MB, ${what} (/proc/PID/smaps; a 4 GB one is V8's heap cage, 64 MB ones glibc arenas, 8 MB ones thread stacks):\n`);
  console.log(rows.length === 0 ? '(none)' : mdTable([['mapping', 'size MB', 'before', 'after', 'moved'], ...rows]));
}

/** Per arena: bytes glibc got from the system and how many of them are free (malloc_info's XML). */
function mallocSummary(xml: string): string {
  const rows: string[][] = [['arena', 'from the system MB', 'free in it MB']];
  const total = (body: string, type: string): number => Number(new RegExp(`<total type="${type}" count="\\d+" size="(\\d+)"`).exec(body)?.[1] ?? 0);
  for (const m of xml.matchAll(/<heap nr="(\d+)">([\s\S]*?)<\/heap>/g)) {
    const body = m[2]!;
    const system = Number(/<system type="current" size="(\d+)"/.exec(body)?.[1] ?? 0);
    rows.push([m[1]!, mb(system / 1024), mb((total(body, 'fast') + total(body, 'rest')) / 1024)]);
  }
  const rest = xml.slice(xml.lastIndexOf('</heap>'));
  rows.push(['chunks mmapped on their own', mb(total(rest, 'mmap') / 1024), '-']);
  return mdTable(rows);
}

/** The daemon's latest self-report (bench/memory-probe.mjs), or null without --probe. */
function probeNow(file: string | null): Probe | null {
  if (file === null || !existsSync(file)) return null;
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as Probe;
}

function printProbe(...at: (Probe | null)[]): void {
  if (at.some((p) => p === null)) {
    console.log('\nprobe: no report from the daemon');
    return;
  }
  const [z, a, b, c] = at as Probe[];
  const row = (what: string, f: (p: Probe) => number): string[] => [what, ...[z, a, b, c].map((p) => mb(f(p!))), `${f(c!) - f(a!) >= 0 ? '+' : ''}${mb(f(c!) - f(a!))}`];
  console.log('\nInside the daemon (bench/memory-probe.mjs), MB:\n');
  console.log(mdTable([
    ['', 'before any proxied request', 'idle after traffic', 'end of load', 'a minute after', 'after − idle'],
    row('RSS (process.memoryUsage)', (p) => p.rss),
    row('V8 heap committed (heapTotal)', (p) => p.heapTotal),
    row('V8 heap used', (p) => p.heapUsed),
    row('V8 heap resident (physical)', (p) => p.v8Physical),
    row('  of which old space', (p) => p.spaces['old'] ?? 0),
    row('  of which new space', (p) => p.spaces['new'] ?? 0),
    row('  of which code space', (p) => p.spaces['code'] ?? 0),
    row('V8 malloced (zones, compiler)', (p) => p.v8Malloced),
    row('external (Buffers and other C++ memory V8 knows of)', (p) => p.external),
    row('  of which ArrayBuffers', (p) => p.arrayBuffers),
    row('smaps: glibc main heap [heap]', (p) => p.smaps.heap),
    row('smaps: anonymous mappings (V8 pages, other arenas, stacks)', (p) => p.smaps.anon),
    row('smaps: file-backed (node binary, libraries)', (p) => p.smaps.file),
    row('  of which the node binary\'s code', (p) => p.smaps.nodeText),
    row('  of which the node binary\'s read-only data (ICU, JS sources of its modules, snapshot)', (p) => p.smaps.nodeRead),
  ]));
}

async function main(): Promise<boolean> {
  console.log(`# daemon memory\n\n${machineLine()}`);
  if (values['daemon-node-options']) {
    process.env['NODE_OPTIONS'] = `${process.env['NODE_OPTIONS'] ?? ''} ${values['daemon-node-options']}`.trim();
    console.log(`NODE_OPTIONS for the daemon: ${process.env['NODE_OPTIONS']}`);
  }
  const probeFile = values.probe ? path.join(os.tmpdir(), `baton-memory-probe-${process.pid}.jsonl`) : null;
  if (probeFile !== null) {
    onCleanup(() => rmSync(probeFile, { force: true }));
    process.env['BATON_MEMORY_PROBE_FILE'] = probeFile;
    process.env['NODE_OPTIONS'] = `${process.env['NODE_OPTIONS'] ?? ''} --import=${path.join(import.meta.dirname, 'memory-probe.mjs')}`.trim();
  }
  if (values.bin !== undefined) console.log(`daemon and CLI: ${path.resolve(values.bin)}`);
  const td = await createDaemon({ start: false, ...(values.bin === undefined ? {} : { bin: path.resolve(values.bin) }) });
  registerDaemon(td);
  writeDaemonConfig(td, SERVICES.map((s) => fixtureService(s, { instances: 2, hosts: [host(s)] })).join('\n'), 'info');
  await td.start();
  const pid = td.proc.pid!;
  await sleep(2000);
  const empty = await sampleRss(pid, 5, 200);

  for (const s of SERVICES) {
    const r = await td.cli(['deploy', s, await td.release(`${s}-v1`)]);
    if (r.code !== 0) throw new Error(`deploy ${s} failed:\n${r.stdout}${r.stderr}`);
  }
  const st = await td.status();
  const instances = st.services.flatMap((s: any) => s.instances) as { pid: number }[];
  console.log(`${st.services.length} services, ${instances.length} instances; daemon pid ${pid}`);
  await sleep(5000);
  const beforeTraffic = await sampleRss(pid, 10, 500);
  const probeBefore = probeNow(probeFile);
  const mapsBefore = anonMappings(pid);
  const instanceRss = median(instances.map((i) => rssKb(i.pid) ?? NaN).filter(Number.isFinite));
  // "Idle" as users see it is idle after traffic: the first proxied requests load
  // code and open pools (13 MB more than before any, /work/shared/DESIGN.md). A
  // short burst per service, the same mix as the load, then 30 s of quiet (the
  // GC pacer's collection at the end of a burst comes within 20 s).
  const mix = [{ path: '/download?bytes=262144', every: 100 }];
  const warmLoads = SERVICES.flatMap((s) => [
    startLoad({ url: `${td.url}/`, concurrency: 4, keepAlive: true, headers: { host: host(s) }, mix, maxRequests: 200, maxMs: 60_000 }),
    startLoad({ url: `${td.url}/`, concurrency: 1, keepAlive: false, headers: { host: host(s) }, mix, maxRequests: 50, maxMs: 60_000 }),
  ]);
  await Promise.all(warmLoads.map((l, i) => l.waitFor(i % 2 === 0 ? 200 : 50, 60_000)));
  const warm = await Promise.all(warmLoads.map((l) => l.stop()));
  const warmFailed = warm.reduce((a, r) => a + r.failed, 0);
  await sleep(QUICK ? 10_000 : 30_000);
  const idle = await sampleRss(pid, 10, 500);
  const probeIdle = probeNow(probeFile);
  const mapsIdle = anonMappings(pid);
  const pagesIdle = values['node-pages'] ? nodePagesTable([{ name: 'daemon, idle after traffic', pid }, { name: 'one app instance', pid: instances[0]!.pid }]) : null;

  // Load: per service 4 keep-alive clients + 1 client with a new connection per
  // request; every 100th request is a 256 KB download (streamed through the proxy).
  console.log(`load: ${LOAD_SECONDS} s, per service 4 keep-alive clients + 1 new-connection client, Host-routed`);
  const loads = SERVICES.flatMap((s) => [
    startLoad({ url: `${td.url}/`, concurrency: 4, keepAlive: true, headers: { host: host(s) }, mix, maxMs: (LOAD_SECONDS + 10) * 1000 }),
    startLoad({ url: `${td.url}/`, concurrency: 1, keepAlive: false, headers: { host: host(s) }, mix, maxMs: (LOAD_SECONDS + 10) * 1000 }),
  ]);
  const samples: number[] = [];
  const t0 = Date.now();
  let results: LoadResult[] = [];
  try {
    while (Date.now() - t0 < LOAD_SECONDS * 1000) {
      await sleep(1000);
      const r = rssKb(pid);
      if (r !== null) samples.push(r);
    }
  } finally {
    results = await Promise.all(loads.map((l) => l.stop()));
  }
  const endOfLoad = samples[samples.length - 1] ?? NaN;
  const probeEnd = probeNow(probeFile);
  const peak = Math.max(...samples);
  await sleep(10_000);
  const settled = await sampleRss(pid, 5, 200);
  // The goal is "back within 10 MB of idle a minute after load".
  await sleep(QUICK ? 5_000 : 49_000);
  const minuteAfter = await sampleRss(pid, 5, 200);
  const probeAfter = probeNow(probeFile);
  const mapsAfter = anonMappings(pid);

  let trimmed: number | null = null;
  if (values['gdb-trim']) {
    // glibc's own account first (malloc_info's XML: per arena, what it holds from the
    // system and how much of that is free), then the trim.
    const xml = path.join(os.tmpdir(), `baton-malloc-info-${process.pid}.xml`);
    const r = spawnSync('gdb', ['-p', String(pid), '-batch', '-ex', `call (void *) fopen("${xml}", "w")`, '-ex', 'call (int) malloc_info(0, $1)', '-ex', 'call (int) fclose($1)', '-ex', 'call (int) malloc_trim(0)'], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) console.log(`gdb failed: ${r.stderr}`);
    if (existsSync(xml)) {
      console.log(`\nglibc malloc_info a minute after the load (before the trim):\n${mallocSummary(readFileSync(xml, 'utf8'))}`);
      rmSync(xml, { force: true });
    }
    await sleep(1000);
    trimmed = await sampleRss(pid, 5, 200);
  }

  const total = results.reduce((a, r) => a + r.total, 0);
  const failed = results.reduce((a, r) => a + r.failed, 0) + warmFailed;
  const perService = SERVICES.map((s, i) => results[2 * i]!.total + results[2 * i + 1]!.total);
  const wrongBody = results.reduce((a, r, i) => a + Object.entries(r.bodies).filter(([b]) => b !== `${SERVICES[i >> 1]}-v1` && b.length < 64).reduce((x, [, n]) => x + n, 0), 0);

  console.log(`\nload: ${total} requests (${SERVICES.map((s, i) => `${s} ${perService[i]}`).join(', ')}), ${failed} failed, ${wrongBody} answered by the wrong service\n`);
  console.log(mdTable([
    ['daemon VmRSS', 'MB', 'vs idle', 'vs one app instance'],
    ['started, no service running', mb(empty), ratio(empty, idle), ratio(empty, instanceRss)],
    ['3 services × 2 instances, before any proxied request', mb(beforeTraffic), ratio(beforeTraffic, idle), ratio(beforeTraffic, instanceRss)],
    ['3 × 2, idle after traffic (750 requests, then 30 s quiet)', mb(idle), '1.00x', ratio(idle, instanceRss)],
    [`under load: peak (1 s samples over ${LOAD_SECONDS} s)`, mb(peak), ratio(peak, idle), ratio(peak, instanceRss)],
    ['under load: at the end', mb(endOfLoad), ratio(endOfLoad, idle), ratio(endOfLoad, instanceRss)],
    ['10 s after the load', mb(settled), ratio(settled, idle), ratio(settled, instanceRss)],
    [QUICK ? '15 s after the load' : '60 s after the load', mb(minuteAfter), ratio(minuteAfter, idle), ratio(minuteAfter, instanceRss)],
    ...(trimmed === null ? [] : [['then after malloc_trim(0) (gdb)', mb(trimmed), ratio(trimmed, idle), ratio(trimmed, instanceRss)]]),
    ['(baseline) one app instance, idle', mb(instanceRss), '-', '1.00x'],
  ]));
  const idleMb = idle / 1024;
  const peakMb = peak / 1024;
  const backMb = (minuteAfter - idle) / 1024;
  const clean = failed === 0 && wrongBody === 0;
  console.log(`\ntarget: idle after traffic ≤ ${IDLE_TARGET_MB} MB: ${fmt(idleMb, 1)} MB → ${verdict(idleMb <= IDLE_TARGET_MB)}`);
  console.log(`target: peak under load ≤ ${PEAK_TARGET_MB} MB: ${fmt(peakMb, 1)} MB → ${verdict(peakMb <= PEAK_TARGET_MB)}`);
  console.log(`target: ${QUICK ? '15 s' : 'a minute'} after the load within ${BACK_WITHIN_MB} MB of idle: ${backMb >= 0 ? '+' : ''}${fmt(backMb, 1)} MB → ${verdict(backMb <= BACK_WITHIN_MB)}`);
  if (!clean) console.log('requests failed or misrouted → MISS');
  if (pagesIdle !== null) console.log(`\nThe node binary's pages resident (bench/node-pages.ts):\n\n${pagesIdle}`);
  if (probeFile !== null) {
    printProbe(probeBefore, probeIdle, probeEnd, probeAfter);
    printAnonDiff(mapsBefore, mapsIdle, 'from before any proxied request to idle after traffic');
    printAnonDiff(mapsIdle, mapsAfter, 'from idle after traffic to a minute after the load');
  }
  const ok = idleMb <= IDLE_TARGET_MB && peakMb <= PEAK_TARGET_MB && backMb <= BACK_WITHIN_MB && clean;
  return ok;
}

await runBench('memory bench', (QUICK ? 3 : 5) * 60_000, main);
