// Where the daemon's event loop stalls, measured inside the daemon: loaded with
// `--import` through NODE_OPTIONS by bench/latency.ts. In the daemon process only
// (the CLI runs and the app instances get NODE_OPTIONS too, and return here at
// once), it appends one JSON line per second to $BATON_LOOP_PROBE_FILE: the
// event loop's delay that second (perf_hooks.monitorEventLoopDelay, 1 ms
// resolution: max, p99, mean), the garbage collections (count, total and longest
// pause, by kind), the CPU time the process used, and every callback that held
// the loop longer than $BATON_LOOP_PROBE_STALL_MS (default 20) with its start
// time, so a stall seen by the load generator can be matched to what ran.
import { appendFileSync } from 'node:fs';
import { PerformanceObserver, constants, monitorEventLoopDelay, performance } from 'node:perf_hooks';

const file = process.env.BATON_LOOP_PROBE_FILE;
const isDaemon = process.argv.slice(2).includes('daemon');

const GC_KIND = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

if (isDaemon && file) {
  const stallMs = Number(process.env.BATON_LOOP_PROBE_STALL_MS ?? 20);
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  /** GC pauses of the current second, by kind: [count, total ms, max ms]. */
  let gcs = {};
  /** GC pauses longer than stallMs, and every one but a scavenge, this second: [start (epoch ms), ms, kind]. */
  let longGcs = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = GC_KIND[e.detail?.kind ?? e.kind] ?? String(e.detail?.kind);
      const g = (gcs[kind] ??= [0, 0, 0]);
      g[0]++;
      g[1] += e.duration;
      g[2] = Math.max(g[2], e.duration);
      if (e.duration >= stallMs || kind !== 'minor') longGcs.push([Math.round(performance.timeOrigin + e.startTime), Math.round(e.duration * 10) / 10, kind]);
    }
  }).observe({ entryTypes: ['gc'] });

  // A stall is a gap between two turns of this 5 ms ticker: the ticker's own
  // cost is one timer callback per 5 ms.
  let last = performance.now();
  let stalls = [];
  setInterval(() => {
    const now = performance.now();
    const gap = now - last - 5;
    if (gap >= stallMs) stalls.push([Math.round(performance.timeOrigin + last), Math.round(gap)]);
    last = now;
  }, 5).unref();

  let cpu = process.cpuUsage();
  setInterval(() => {
    const c = process.cpuUsage();
    const r2 = (x) => Math.round(x * 100) / 100;
    const line = {
      t: Date.now(),
      cpuMs: Math.round((c.user - cpu.user + c.system - cpu.system) / 1000),
      loopMaxMs: r2(delay.max / 1e6),
      loopP99Ms: r2(delay.percentile(99) / 1e6),
      loopMeanMs: r2(delay.mean / 1e6),
      gc: Object.fromEntries(Object.entries(gcs).map(([k, [n, total, max]]) => [k, { n, totalMs: r2(total), maxMs: r2(max) }])),
      longGcs,
      stalls,
    };
    cpu = c;
    delay.reset();
    gcs = {};
    longGcs = [];
    stalls = [];
    try {
      appendFileSync(file, JSON.stringify(line) + '\n');
    } catch {
      // the bench's temp dir is gone: the daemon is being stopped
    }
  }, 1000).unref();
}
