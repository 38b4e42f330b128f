// The two ways baton runs on a server, side by side: the single executable
// (build/baton-linux-x64, `npm run build:exe`) and the clone/npm path (Node 24
// running bin/baton.js → dist/). Figures: the executable's size; cold start
// to "daemon serving" (its listener answers /_baton/health) and to a
// `baton status` answered (a fresh CLI process, start to exit); the daemon's
// VmRSS after traffic. Runs are short (2 shared cores): 5 starts per path.
//
//   node bench/install.ts [--quick]     (--quick: 2 starts per path)

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, waitUntil } from '../test/helpers/daemon.ts';
import { startLoad } from '../test/helpers/load.ts';
import { QUICK, ROOT, machineLine, mb, onCleanup, rssKb, runBench, spawnGroup } from './lib.ts';

const EXE = path.join(ROOT, 'build/baton-linux-x64');
const RUNS = QUICK ? 2 : 5;

interface Variant {
  name: string;
  argv: string[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function httpOk(url: string): Promise<boolean> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await r.arrayBuffer();
    return r.status === 200;
  } catch {
    return false;
  }
}

/** One cold start: a fresh state directory, the daemon, then one `baton status`. */
async function coldStart(v: Variant, withTraffic: boolean): Promise<{ servingMs: number; statusMs: number; rssKb: number | null }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'baton-bench-install-'));
  const port = await freePort();
  const config = path.join(dir, 'baton.yaml');
  writeFileSync(
    config,
    [
      `listen: ["127.0.0.1:${port}"]`,
      `state_dir: ${path.join(dir, 'state')}`,
      'services:',
      '  web:',
      `    command: exec "${process.execPath}" server.js`,
      '    instances: 2',
      '    health: { path: /healthz, interval: 200ms, healthy_threshold: 1 }',
      '',
    ].join('\n'),
  );
  const [cmd, ...pre] = v.argv;
  const t0 = performance.now();
  const daemon = spawnGroup(cmd!, [...pre, 'daemon', '--config', config], { stdio: 'ignore', cwd: dir });
  const removeCleanup = onCleanup(async () => {
    spawnSync(cmd!, [...pre, 'shutdown', '--stop-instances', '--config', config], { stdio: 'ignore', timeout: 20_000 });
    rmSync(dir, { recursive: true, force: true });
  });
  await waitUntil(`${v.name}: the daemon serving /_baton/health`, () => httpOk(`http://127.0.0.1:${port}/_baton/health`), 30_000, 5);
  const servingMs = performance.now() - t0;
  const s0 = performance.now();
  const st = spawnSync(cmd!, [...pre, 'status', '--config', config], { stdio: 'ignore', timeout: 30_000 });
  const statusMs = performance.now() - s0;
  if (st.status !== 0) throw new Error(`${v.name}: baton status exited ${st.status}`);
  let rss: number | null = null;
  if (withTraffic) {
    const dep = spawnSync(cmd!, [...pre, 'deploy', 'web', path.join(ROOT, 'examples/app-v1'), '--config', config], { stdio: 'ignore', timeout: 60_000 });
    if (dep.status !== 0) throw new Error(`${v.name}: deploy exited ${dep.status}`);
    const load = startLoad({ url: `http://127.0.0.1:${port}/`, concurrency: 4, maxRequests: 5000, maxMs: 30_000 });
    await load.waitFor(5000, 30_000);
    const r = await load.stop();
    if (r.failed) throw new Error(`${v.name}: ${r.failed} requests failed`);
    await new Promise((res) => setTimeout(res, 1000));
    rss = rssKb(daemon.pid!);
  }
  spawnSync(cmd!, [...pre, 'shutdown', '--stop-instances', '--config', config], { stdio: 'ignore', timeout: 20_000 });
  await new Promise((res) => (daemon.exitCode !== null ? res(null) : daemon.once('exit', res)));
  rmSync(dir, { recursive: true, force: true });
  removeCleanup();
  return { servingMs, statusMs, rssKb: rss };
}

await runBench('install', 10 * 60_000, async () => {
  console.log(machineLine());
  if (!existsSync(EXE)) {
    console.log('building the executable (npm run build:exe) …');
    const b = spawn(process.execPath, [path.join(ROOT, 'scripts/build-exe.ts')], { stdio: 'inherit' });
    await new Promise((res) => b.once('exit', res));
  }
  // The clone path runs dist/ only when it is at least as new as src/ (bin/baton.js): build it now.
  const built = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'ignore', env: { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env['PATH'] ?? ''}` } });
  if (built.status !== 0 || !existsSync(path.join(ROOT, 'dist/.built'))) throw new Error('npm run build failed');
  const variants: Variant[] = [
    { name: 'single executable', argv: [EXE] },
    { name: 'clone / npm (Node 24 + dist/)', argv: [process.execPath, path.join(ROOT, 'bin/baton.js')] },
  ];
  console.log(`\nexecutable: ${EXE}: ${(statSync(EXE).size / 1024 / 1024).toFixed(1)} MB`);
  console.log('\n| path | daemon serving (median ms) | `baton status` (median ms) | runs | daemon VmRSS after 5,000 requests (MB) |');
  console.log('|---|---|---|---|---|');
  for (const v of variants) {
    const runs = [];
    // Alternate nothing else: each run is a cold process; the last one also carries traffic.
    for (let i = 0; i < RUNS; i++) runs.push(await coldStart(v, i === RUNS - 1));
    const rss = runs.at(-1)!.rssKb;
    console.log(`| ${v.name} | ${median(runs.map((r) => r.servingMs)).toFixed(0)} | ${median(runs.map((r) => r.statusMs)).toFixed(0)} | ${RUNS} | ${mb(rss)} |`);
  }
  return true;
});
