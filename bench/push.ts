// Push to deploy: time from `git push` to the new release serving 100% of the
// traffic, and where that time goes; then the same for a redeploy of a commit
// already exported and built (`baton deploy web --ref SHA`: no export, no build).
//
// One real daemon (test harness: temp dir, real CLI). The service runs the
// example app (examples/app-v1, app-v2: `node server.js`, 2 instances, health
// on /healthz every 1 s) from a git repository the bench creates: commit 1 is
// app-v1, commit 2 app-v2, commit N (N ≥ 3) app-v2 answering "vN". Every commit
// also holds build.mjs, run by the `build` hook: it writes a ~4 MB bundle, its
// gzip and a manifest into public/ (~100-200 ms of real work). The service is
// configured with `git: { repo: <the bare repository> }` as well, for the
// redeploys by --ref.
//
// `baton git-remote web <bare>` once, push commit 1 (the first deploy, reported
// apart), then N times (7; --runs): commit the next version and `git push` it
// (a push run), then `baton deploy web --ref <sha>` of commit 1 or 2 in turn
// (a redeploy run: exported and built already, not serving). Interleaved, so
// the machine's noise hits both kinds alike.
//
// Each run is split, from the deployment's events (`baton history web --json`:
// each event has `at`, `step`, `durationMs`) and the wall clock around the command:
//   before the deployment   command start → deployment recorded (git pack and
//                           transfer, the pre-receive hook, the CLI starting,
//                           the daemon reading the commit / fetching for --ref)
//   export                  `git archive` into the release directory ("exported" event)
//   build                   the build hook ("build hook done" event)
//   rest of preparing       preparing step minus export and build
//   start-to-healthy        `starting` step → "all instances healthy"
//   switch                  healthy → "traffic switched"
// and a polling client (one keep-alive connection, a request every 5 ms) gives
// the moment it first sees only the new version ("polled 100% new").
// Baselines in the same run: the app's own start time (2 processes of the
// example app started directly, /healthz polled every 5 ms until both answer),
// `git push` of the same commits to a bare repository without hooks, and a CLI
// round trip (`baton status web --json`).
//
// Target: baton's own overhead under 1 s, i.e.
//   polled 100% new − build hook − the app's own start time (baseline) < 1000 ms (median).
//
//   node bench/push.ts [--quick] [--runs N]

import { execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client } from 'undici';
import { createDaemon, freePort, type TestDaemon } from '../test/helpers/daemon.ts';
import { git } from '../test/helpers/git.ts';
import {
  ROOT, QUICK, cliOperation, collect, daemonCode, fmt, history, machineLine, mdTable, median, ratio, registerDaemon, runBench, sleep, spawnGroup, verdict,
  writeDaemonConfig, type Deployment, type HistoryEvent,
} from './lib.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
  },
});
const RUNS = Number(values.runs ?? (QUICK ? 2 : 7));
const TARGET_OVERHEAD_MS = 1000;
const POLL_EVERY_MS = 5;
const NODE = process.execPath;

// The build step committed with the app: a bundle, its gzip and a manifest in public/.
const BUILD_MJS = `// Build step of the example app (benchmark): bundle, compress, write a manifest.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
mkdirSync('public', { recursive: true });
const src = readFileSync('server.js', 'utf8');
const bundle = Array.from({ length: 6000 }, (_, i) => src.replaceAll('VERSION', 'V' + i)).join('\\n');
const gz = gzipSync(bundle, { level: 9 });
const h = createHash('sha256').update(bundle).digest('hex').slice(0, 12);
writeFileSync(\`public/app.\${h}.js\`, bundle);
writeFileSync(\`public/app.\${h}.js.gz\`, gz);
writeFileSync('public/manifest.json', JSON.stringify({ 'app.js': \`app.\${h}.js\`, bytes: bundle.length, gzip: gz.length }));
console.log(\`built public/app.\${h}.js: \${bundle.length} bytes, \${gz.length} gzipped\`);
`;

/** Files of version n of the example app: 1 = app-v1, 2 = app-v2, n ≥ 3 = app-v2 answering "vN". */
async function appFiles(n: number): Promise<Record<string, string>> {
  const base = path.join(ROOT, 'examples', n === 1 ? 'app-v1' : 'app-v2');
  let server = await readFile(path.join(base, 'server.js'), 'utf8');
  if (n >= 3) server = server.replace("const VERSION = 'v2';", `const VERSION = 'v${n}';`);
  if (!server.includes(`const VERSION = 'v${n}';`)) throw new Error(`examples/app-v2/server.js changed: cannot make version ${n}`);
  return { 'server.js': server, 'package.json': await readFile(path.join(base, 'package.json'), 'utf8'), 'build.mjs': BUILD_MJS };
}
const bodyOf = (n: number): string => `hello from v${n}`;

// ---- the polling client ------------------------------------------------------

interface Poll {
  at: number; // Date.now() when the response was complete
  body: string | null; // null: failed
}

function startPoller(origin: string): { polls: Poll[]; failures: { at: number; what: string }[]; stop(): Promise<void> } {
  const polls: Poll[] = [];
  const failures: { at: number; what: string }[] = [];
  let stopping = false;
  const client = new Client(origin, { keepAliveTimeout: 30_000 });
  const done = (async () => {
    while (!stopping) {
      let body: string | null = null;
      try {
        const r = await client.request({ method: 'GET', path: '/', headersTimeout: 10_000, bodyTimeout: 10_000 });
        const text = (await r.body.text()).trim();
        if (r.statusCode === 200) body = text;
        else failures.push({ at: Date.now(), what: `status ${r.statusCode}: ${text.replace(/\s+/g, ' ').slice(0, 100)}` });
      } catch (e) {
        failures.push({ at: Date.now(), what: (e as Error).message });
      }
      polls.push({ at: Date.now(), body });
      await sleep(POLL_EVERY_MS);
    }
    await client.close().catch(() => undefined);
  })();
  return {
    polls,
    failures,
    async stop() {
      stopping = true;
      await done;
    },
  };
}

/** First time (ms after t0) from which every poll answered `expect`; null if it never happened. */
function allNewFrom(polls: Poll[], t0: number, expect: string): { ms: number | null; polls: number; failed: number } {
  const win = polls.filter((p) => p.at >= t0);
  let lastOther = -1;
  for (let i = 0; i < win.length; i++) if (win[i]!.body !== expect) lastOther = i;
  const first = win[lastOther + 1];
  return { ms: first ? first.at - t0 : null, polls: win.length, failed: win.filter((p) => p.body === null).length };
}

// ---- baselines ---------------------------------------------------------------

/** The example app's own start time: 2 processes started at once, /healthz polled every 5 ms until both answer. */
async function appStartMs(): Promise<number> {
  const cwd = path.join(ROOT, 'examples', 'app-v2');
  const ports = [await freePort(), await freePort()];
  const t0 = performance.now();
  const procs = ports.map((p) => spawnGroup(NODE, ['server.js'], { cwd, stdio: 'ignore', env: { ...process.env, PORT: String(p) } }));
  try {
    await Promise.all(ports.map(async (p) => {
      for (;;) {
        if (performance.now() - t0 > 15_000) throw new Error('the example app did not start within 15 s');
        try {
          const r = await fetch(`http://127.0.0.1:${p}/healthz`);
          await r.text();
          if (r.ok) return;
        } catch {
          // not listening yet
        }
        await sleep(5);
      }
    }));
    return performance.now() - t0;
  } finally {
    for (const c of procs) {
      try {
        process.kill(-c.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

async function gitPush(cwd: string, remote: string): Promise<{ ms: number; output: string }> {
  const t0 = performance.now();
  const c = spawnGroup('git', ['push', '--quiet', remote, 'main'], { cwd });
  let err = '';
  c.stderr!.on('data', (d) => (err += d));
  const out = await collect(c, 120_000, `git push ${remote}`).catch((e: Error) => {
    throw new Error(`${e.message}\n${err}`);
  });
  return { ms: performance.now() - t0, output: out + err };
}

// ---- one deployment's breakdown ----------------------------------------------

interface Breakdown {
  label: string;
  wallMs: number; // the command (git push / baton deploy) from start to exit
  beforeDeploymentMs: number;
  exportMs: number;
  exported: boolean;
  buildMs: number;
  built: boolean;
  otherPreparingMs: number;
  spawnMs: number;
  startToHealthyMs: number;
  switchMs: number;
  toSwitchMs: number; // command start → traffic switched
  polledMs: number | null; // command start → the poller sees only the new version
  afterSwitchMs: number; // traffic switched → command exit (drain, done, git ref update, CLI exit)
  overheadMs: number; // polled − build − app start (baseline)
  polls: number;
  pollFailed: number;
  gitAloneMs: number | null;
  cliRoundTripMs: number;
}

function findEvent(d: Deployment, what: string, pred: (e: HistoryEvent) => boolean): HistoryEvent {
  const e = d.events?.find(pred);
  if (!e) throw new Error(`deployment #${d.id}: no ${what} event in ${JSON.stringify(d.events?.map((x) => `${x.step}: ${x.message.split('\n')[0]}`))}`);
  return e;
}

function breakdown(label: string, d: Deployment, t0: number, t1: number, polled: number | null, appStart: number): Omit<Breakdown, 'polls' | 'pollFailed' | 'gitAloneMs' | 'cliRoundTripMs'> {
  if (d.state !== 'done') throw new Error(`deployment #${d.id} ended ${d.state}: ${d.error}`);
  const prep = (e: HistoryEvent): boolean => e.step === 'preparing';
  const exp = findEvent(d, 'export', (e) => prep(e) && /^exported \d+ file|already on disk/.test(e.message));
  const build = findEvent(d, 'build', (e) => prep(e) && /^build hook done in|already built/.test(e.message));
  const starting = findEvent(d, 'starting step', (e) => e.step === 'starting');
  const verifying = findEvent(d, 'verifying step', (e) => e.step === 'verifying');
  const healthy = findEvent(d, 'healthy', (e) => e.message.endsWith(' instance(s) healthy'));
  const switched = findEvent(d, 'traffic switched', (e) => e.message.startsWith('traffic switched to'));
  const exportMs = exp.message.startsWith('exported') ? (exp.durationMs ?? 0) : 0;
  const buildMs = build.message.startsWith('build hook done') ? (build.durationMs ?? 0) : 0;
  return {
    label,
    wallMs: t1 - t0,
    beforeDeploymentMs: d.startedAt - t0,
    exportMs,
    exported: exp.message.startsWith('exported'),
    buildMs,
    built: build.message.startsWith('build hook done'),
    otherPreparingMs: starting.at - d.startedAt - exportMs - buildMs,
    spawnMs: verifying.at - starting.at,
    startToHealthyMs: healthy.at - starting.at,
    switchMs: switched.at - healthy.at,
    toSwitchMs: switched.at - t0,
    polledMs: polled,
    afterSwitchMs: t1 - switched.at,
    overheadMs: (polled ?? NaN) - buildMs - appStart,
  };
}

// ---- the bench ----------------------------------------------------------------

async function cliRoundTrip(td: TestDaemon): Promise<number> {
  const t0 = performance.now();
  await td.status('web');
  return performance.now() - t0;
}

async function main(): Promise<boolean> {
  console.log(`# push to deploy\n\n${machineLine()}`);
  console.log(`daemon and CLI run: ${daemonCode()}`);
  console.log(`${RUNS} push run(s) and ${RUNS} redeploy run(s), interleaved; example app, 2 instances, health /healthz every 1 s (re-checked every 250 ms while starting)\n`);

  const td = await createDaemon({ start: false });
  registerDaemon(td);
  const bare = path.join(td.dir, 'push.git');
  const mirror = path.join(td.dir, 'mirror.git'); // git push alone (no hook): the baseline
  const work = path.join(td.dir, 'work');
  writeDaemonConfig(td, [
    '  web:',
    `    command: exec "${NODE}" server.js`,
    '    instances: 2',
    '    health: { path: /healthz, interval: 1s, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 2, start_timeout: 15s }',
    '    drain_timeout: 5s',
    '    stop_timeout: 3s',
    '    keep_releases: 50',
    `    git: { repo: "${bare}", branch: main }`,
    '    hooks:',
    `      build: exec "${NODE}" build.mjs`,
  ].join('\n'), 'info');
  await td.start();
  const gr = await td.cli(['git-remote', 'web', bare]);
  if (gr.code !== 0) throw new Error(`baton git-remote failed: ${gr.stdout}${gr.stderr}`);
  execFileSync('git', ['init', '--quiet', '--bare', '--initial-branch', 'main', mirror]);
  await mkdir(work, { recursive: true });
  git(work, 'init', '--quiet', '--initial-branch', 'main');
  const shas: string[] = [];
  const commit = async (n: number): Promise<string> => {
    for (const [name, content] of Object.entries(await appFiles(n))) await writeFile(path.join(work, name), content);
    git(work, 'add', '-A');
    git(work, 'commit', '--quiet', '-m', `example app v${n}`);
    const sha = git(work, 'rev-parse', 'HEAD');
    shas[n] = sha;
    return sha;
  };

  // Baselines.
  const appStarts: number[] = [];
  for (let i = 0; i < 3; i++) appStarts.push(await appStartMs());
  const appStart = median(appStarts);
  console.log(`baseline: the example app's own start (2 processes, until both answer /healthz): ${appStarts.map((x) => fmt(x, 0)).join(', ')} ms → median ${fmt(appStart, 0)} ms`);

  const poller = startPoller(td.url);
  let servingSince = Infinity;
  const results: { push: Breakdown[]; redeploy: Breakdown[]; first: Breakdown | null } = { push: [], redeploy: [], first: null };
  try {
    const pushRun = async (n: number, label: string): Promise<Breakdown> => {
      const sha = await commit(n);
      const gitAlone = (await gitPush(work, mirror)).ms;
      const rt = await cliRoundTrip(td);
      await sleep(300);
      const t0 = Date.now();
      const p = await gitPush(work, bare);
      const t1 = Date.now();
      await sleep(300);
      const d = (await history(td, 'web')).find((x) => x.toRelease === sha.slice(0, 12) && x.startedAt >= t0);
      if (!d) throw new Error(`no deployment of ${sha.slice(0, 12)} after the push:\n${p.output}`);
      const seen = allNewFrom(poller.polls, t0, bodyOf(n));
      const b = { ...breakdown(label, d, t0, t1, seen.ms, appStart), polls: seen.polls, pollFailed: seen.failed, gitAloneMs: gitAlone, cliRoundTripMs: rt };
      if (!b.exported || !b.built) throw new Error(`push of v${n}: expected an export and a build, got ${JSON.stringify(b)}`);
      return b;
    };
    const redeployRun = async (n: number, label: string): Promise<Breakdown> => {
      const rt = await cliRoundTrip(td);
      await sleep(300);
      const t0 = Date.now();
      const o = await cliOperation(td, ['deploy', 'web', '--ref', shas[n]!]);
      const t1 = Date.now();
      if (o.outcome?.state !== 'done') throw new Error(`redeploy of v${n} failed:\n${o.output}`);
      await sleep(300);
      const [d] = await history(td, 'web', o.outcome.deploymentId);
      const seen = allNewFrom(poller.polls, t0, bodyOf(n));
      const b = { ...breakdown(label, d!, t0, t1, seen.ms, appStart), polls: seen.polls, pollFailed: seen.failed, gitAloneMs: null, cliRoundTripMs: rt };
      if (b.exported || b.built) throw new Error(`redeploy of v${n}: expected no export and no build, got ${JSON.stringify(b)}`);
      return b;
    };
    const show = (b: Breakdown): void =>
      console.log(`  ${b.label.padEnd(16)} polled 100% new after ${fmt(b.polledMs ?? NaN, 0)} ms (switch at ${b.toSwitchMs}): before deployment ${b.beforeDeploymentMs}, export ${b.exportMs}, build ${b.buildMs}, other preparing ${b.otherPreparingMs}, start→healthy ${b.startToHealthyMs}, switch ${b.switchMs}; command exits after ${b.wallMs} ms; overhead ${fmt(b.overheadMs, 0)} ms; ${b.polls} polls, ${b.pollFailed} failed`);

    console.log('\nfirst deploy (nothing serving yet: the poller gets 503s until it is done, not counted):');
    results.first = await pushRun(1, 'push v1 (first)');
    show(results.first);
    servingSince = Date.now();
    // Interleaved (push, redeploy, push, …) so that the machine's noise hits both alike.
    console.log('\nruns, interleaved: push of a new commit, then redeploy --ref of an already built commit (v1, v2, v1, …):');
    for (let i = 0; i < RUNS; i++) {
      await sleep(1000);
      const p = await pushRun(i + 2, `push v${i + 2}`);
      show(p);
      results.push.push(p);
      await sleep(1000);
      const n = i % 2 === 0 ? 1 : 2;
      const r = await redeployRun(n, `--ref v${n}`);
      show(r);
      results.redeploy.push(r);
    }
  } finally {
    await poller.stop();
  }

  const cols: [string, (b: Breakdown) => number | null][] = [
    ['command start → deployment recorded', (b) => b.beforeDeploymentMs],
    ['export (git archive)', (b) => b.exportMs],
    ['build hook', (b) => b.buildMs],
    ['rest of preparing', (b) => b.otherPreparingMs],
    ['start → healthy', (b) => b.startToHealthyMs],
    ['  of which spawning', (b) => b.spawnMs],
    ['healthy → traffic switched', (b) => b.switchMs],
    ['**command start → traffic switched**', (b) => b.toSwitchMs],
    ['**command start → polled 100% new**', (b) => b.polledMs],
    ['traffic switched → command exits', (b) => b.afterSwitchMs],
    ['command wall time', (b) => b.wallMs],
    ['baton overhead (polled − build − app start)', (b) => b.overheadMs],
    ['(baseline) git push alone, no hook', (b) => b.gitAloneMs],
    ['(baseline) CLI round trip (status --json)', (b) => b.cliRoundTripMs],
  ];
  const stat = (bs: Breakdown[], f: (b: Breakdown) => number | null): { med: number; max: number } => {
    const xs = bs.map(f).filter((x): x is number => x !== null && Number.isFinite(x));
    return { med: median(xs), max: xs.length ? Math.max(...xs) : NaN };
  };
  console.log(`\n## Push to deploy and redeploy: median / max of ${RUNS} runs, ms (baseline: the app's own start ${fmt(appStart, 0)} ms)\n`);
  console.log(mdTable([
    ['step', 'git push: median', 'max', 'redeploy --ref: median', 'max'],
    ...cols.map(([name, f]) => {
      const p = stat(results.push, f);
      const r = stat(results.redeploy, f);
      return [name, fmt(p.med, 0), fmt(p.max, 0), fmt(r.med, 0), fmt(r.max, 0)];
    }),
  ]));
  const pushPolled = stat(results.push, (b) => b.polledMs).med;
  const pushBuild = stat(results.push, (b) => b.buildMs).med;
  const pushOverhead = stat(results.push, (b) => b.overheadMs);
  const redeployOverhead = stat(results.redeploy, (b) => b.overheadMs);
  const gitAlone = stat(results.push, (b) => b.gitAloneMs).med;
  // Every poll from the end of the first deploy to the end of the last run counts (also those between runs).
  const lateFailures = poller.failures.filter((f) => f.at >= servingSince);
  const pollFailed = lateFailures.length;
  console.log(`\nratios (medians): push → 100% new vs the build hook + the app's own start: ${ratio(pushPolled, pushBuild + appStart)}; ` +
    `git push with the deploy vs git push alone: ${ratio(stat(results.push, (b) => b.wallMs).med, gitAlone)}; ` +
    `redeploy → 100% new vs the app's own start: ${ratio(stat(results.redeploy, (b) => b.polledMs).med, appStart)}`);
  console.log(`polling client after the first deploy: ${poller.polls.filter((p) => p.at >= servingSince).length} requests, ${pollFailed} failed${pollFailed ? `: ${lateFailures.slice(0, 5).map((f) => f.what).join('; ')}` : ''}`);
  const ok = pushOverhead.med < TARGET_OVERHEAD_MS && redeployOverhead.med < TARGET_OVERHEAD_MS && pollFailed === 0;
  console.log('\n## Targets\n');
  console.log(mdTable([
    ['target', 'median', 'max', 'verdict'],
    [`baton overhead < ${TARGET_OVERHEAD_MS} ms, git push`, `${fmt(pushOverhead.med, 0)} ms`, `${fmt(pushOverhead.max, 0)} ms`, verdict(pushOverhead.med < TARGET_OVERHEAD_MS)],
    [`baton overhead < ${TARGET_OVERHEAD_MS} ms, redeploy --ref`, `${fmt(redeployOverhead.med, 0)} ms`, `${fmt(redeployOverhead.max, 0)} ms`, verdict(redeployOverhead.med < TARGET_OVERHEAD_MS)],
    ['polling client: 0 failed', String(pollFailed), '-', verdict(pollFailed === 0)],
  ]));
  return ok;
}

await runBench('push bench', (QUICK ? 4 : 10) * 60_000, main);
