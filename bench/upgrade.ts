// `baton upgrade` under load, many times in a row: failed requests (target 0),
// the longest time without a successful response around each upgrade against
// the p99 latency of the same run (target: under it), and the time from the
// command to the new daemon serving. Small on purpose: the machine is shared.
//
//   node bench/upgrade.ts [--quick]   (20 upgrades; 5 with --quick)

import { createDaemon } from '../test/helpers/daemon.ts';
import { latencyIn, startTimedLoad } from './timed-load.ts';
import { machineLine, registerDaemon, runBench, QUICK } from './lib.ts';

const UPGRADES = QUICK ? 5 : 20;

async function main(): Promise<boolean> {
  console.log(machineLine());
  const td = await createDaemon();
  registerDaemon(td);
  const r = await td.cli(['deploy', 'web', await td.release('v1')]);
  if (r.code !== 0) throw new Error(`deploy failed: ${r.stderr}`);
  const origin = td.url;
  const expectBody = (b: string): boolean => b === 'v1';
  // Keep-alive clients and clients opening a connection per request.
  const keep = startTimedLoad({ origin, clients: 4, keepAlive: true, path: () => '/', expectBody, maxMs: 30 * 60_000 });
  const fresh = startTimedLoad({ origin, clients: 2, keepAlive: false, path: () => '/', expectBody, maxMs: 30 * 60_000 });
  await new Promise((res) => setTimeout(res, 2000));

  const rows: { n: number; commandMs: number; servingMs: number; gapMs: number; gapAt: number }[] = [];
  const windows: [number, number][] = [];
  for (let i = 1; i <= UPGRADES; i++) {
    const from = performance.now();
    const u = await td.cli(['upgrade', '--json'], 120_000);
    const to = performance.now();
    if (u.code !== 0) throw new Error(`upgrade ${i} failed: ${u.stdout}${u.stderr}`);
    const res = JSON.parse(u.stdout) as { oldPid: number; msToServing: number };
    // The old daemon drains and exits (no WebSockets here): wait for it, then a quiet second.
    for (let k = 0; k < 300; k++) {
      try {
        process.kill(res.oldPid, 0);
      } catch {
        break;
      }
      await new Promise((r2) => setTimeout(r2, 100));
    }
    await new Promise((r2) => setTimeout(r2, 1000));
    windows.push([from, performance.now()]);
    rows.push({ n: i, commandMs: Math.round(to - from), servingMs: res.msToServing, gapMs: 0, gapAt: 0 });
    process.stdout.write(`upgrade ${i}: serving after ${res.msToServing} ms (command ${Math.round(to - from)} ms)\n`);
  }
  // The same measure with no upgrade, for comparison on this (shared) machine: windows as long as the median upgrade's.
  const lengths = windows.map(([a, b]) => b - a).sort((a, b) => a - b);
  const quietMs = lengths[Math.floor(lengths.length / 2)]!;
  const quiet: [number, number][] = [];
  for (let i = 0; i < 3; i++) {
    const from = performance.now();
    await new Promise((r2) => setTimeout(r2, quietMs));
    quiet.push([from, performance.now()]);
  }
  await Promise.all([keep.stop(), fresh.stop()]);
  const records = [...keep.records, ...fresh.records];
  const failed = keep.failed() + fresh.failed();

  // The longest time without any successful response, per window.
  const okEnds = records.filter((x) => x.ok).map((x) => x.end).sort((a, b) => a - b);
  const gapAt = ([from, to]: [number, number]): { gap: number; at: number } => {
    let last = from;
    let gap = 0;
    let at = 0;
    for (const e of okEnds) {
      if (e < from) continue;
      if (e > to) break;
      if (e - last > gap) {
        gap = e - last;
        at = last - from;
      }
      last = e;
    }
    return { gap: Math.round(gap), at: Math.round(at) };
  };
  const longestGap = (w: [number, number]): number => gapAt(w).gap;
  windows.forEach((w, i) => {
    const g = gapAt(w);
    rows[i]!.gapMs = g.gap;
    rows[i]!.gapAt = g.at;
  });
  const quietGaps = quiet.map(longestGap);
  const first = records[0]?.start ?? 0;
  const end = records.at(-1)?.end ?? 0;
  const all = latencyIn(records, first, end, () => true);
  const ok = latencyIn(records, first, end, (x) => x.ok);
  const maxGap = Math.max(...rows.map((x) => x.gapMs));
  const serving = rows.map((x) => x.servingMs).sort((a, b) => a - b);
  const median = serving[Math.floor(serving.length / 2)]!;

  console.log(`\n| upgrade | command → new daemon serving | \`baton upgrade\` command | longest gap without a success | the gap began |`);
  console.log('|---:|---:|---:|---:|---:|');
  for (const x of rows) console.log(`| ${x.n} | ${x.servingMs} ms | ${x.commandMs} ms | ${x.gapMs} ms | +${x.gapAt} ms |`);
  console.log(`\nrequests ${records.length}, failed ${failed}${failed ? ` (${[...keep.errors, ...fresh.errors].slice(0, 5).join('; ')})` : ''}`);
  console.log(`latency over the whole run: p50 ${ok.p50.toFixed(1)} ms, p99 ${all.p99.toFixed(1)} ms, max ${all.max.toFixed(1)} ms`);
  console.log(`longest gap without a successful response: ${maxGap} ms (target: under p99 ${all.p99.toFixed(1)} ms); median of the upgrades ${[...rows.map((x) => x.gapMs)].sort((a, b) => a - b)[Math.floor(rows.length / 2)]} ms`);
  console.log(`the same measure in ${quiet.length} windows of ${Math.round(quietMs)} ms with no upgrade: ${quietGaps.join(', ')} ms`);
  console.log(`command → new daemon serving: median ${median} ms, min ${serving[0]} ms, max ${serving.at(-1)} ms`);
  const gapOk = maxGap < all.p99;
  console.log(`verdict: failed ${failed === 0 ? 'OK' : 'MISS'}, gap ${gapOk ? 'OK' : 'MISS'}`);
  return failed === 0 && gapOk;
}

await runBench('upgrade bench', (QUICK ? 5 : 20) * 60_000, main);
