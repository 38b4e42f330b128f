// Rolling deploys across 4 real hosts (each a real sshd + its own baton
// daemon on its own loopback address) behind a real HAProxy, driven by the
// real `baton fleet` over real OpenSSH, under load through HAProxy.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import os from 'node:os';
import path from 'node:path';
import { createFleet, fleetServiceYaml, type TestFleet } from '../helpers/fleet-hosts.ts';
import { fleetYaml } from '../helpers/fleet-file.ts';
import { startLoad, type RunningLoad } from '../helpers/load.ts';

const run = promisify(execFile);
let f: TestFleet;
let shared: string;
const migrations = (): string => path.join(shared, 'migrations.log');
const service = (extra = ''): string =>
  fleetServiceYaml({ startTimeout: '3s', extra: `hooks: { migrate: "echo $BATON_RELEASE >> ${migrations()}" }${extra ? `\n${extra}` : ''}` });

before(async () => {
  shared = await mkdtemp(path.join(os.tmpdir(), 'baton-fleet-shared-'));
  f = await createFleet({ hosts: 4, services: () => service(), haproxy: { agentCheck: true } });
  await f.writeFleetFile(fleetYaml(f));
  // Every host on v1 first (no load yet): the rollouts below start from a warm fleet.
  const r = await f.fleet(['deploy', 'web', await f.release('v1'), '--batch', '4', '--canary', '0', '--bake', '0s']);
  assert.equal(r.code, 0, `initial rollout failed:\n${r.stdout}\n${r.stderr}`);
});

after(async () => {
  await f?.cleanup();
  await rm(shared, { recursive: true, force: true });
});

function load(): RunningLoad[] {
  const url = `${f.haproxy!.url}/`;
  return [
    startLoad({ url, concurrency: 3, keepAlive: true, mix: [{ path: '/slow?ms=300', every: 7 }], maxMs: 120_000 }),
    startLoad({ url, concurrency: 2, keepAlive: false, maxMs: 120_000, thinkMs: 5 }),
  ];
}

async function currentReleases(): Promise<string[]> {
  return Promise.all(f.hosts.map(async (h) => (await h.status('web')).services[0].currentRelease as string));
}

test('4 hosts, batch 2, canary first: all on the new release, 0 failed requests, migrations ran once', async () => {
  const before = (await readFile(migrations(), 'utf8')).trim().split('\n').length;
  const connsBefore = await Promise.all(f.hosts.map((h) => h.sshConnections()));
  const loads = load();
  await Promise.all(loads.map((l) => l.waitFor(20, 20_000)));
  const r = await f.fleet(['deploy', 'web', await f.release('v2')]);
  const results = await Promise.all(loads.map((l) => l.stop()));
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  // The plan: canary h1 alone, then h2+h3, then h4.
  assert.match(r.stdout, /canary: h1 {2}\(runs the migrations\)\n {2}batch 2: h2, h3\n {2}batch 3: h4/);
  // The same bytes everywhere: one release id, named by content, on every host.
  const rels = await currentReleases();
  for (const rel of rels) assert.match(rel, /^v2-[0-9a-f]{12}-[0-9a-f]{12}$/);
  assert.equal(new Set(rels).size, 1);
  const lines = (await readFile(migrations(), 'utf8')).trim().split('\n');
  assert.equal(lines.length - before, 1, `the migrate hook ran ${lines.length - before} times:\n${lines.join('\n')}`);
  for (const res of results) {
    assert.equal(res.failed, 0, `failed requests: ${res.errors.join('; ')}`);
    assert.ok((res.bodies['v2'] ?? 0) > 0, `v2 never answered: ${JSON.stringify(res.bodies)}`);
    assert.deepEqual(Object.keys(res.bodies).sort(), ['v1', 'v2']);
  }
  const conns = await Promise.all(f.hosts.map((h) => h.sshConnections()));
  const perHost = conns.map((c, i) => c - connsBefore[i]!);
  // h1 also holds the fleet lock: still one connection.
  assert.deepEqual(perHost, [1, 1, 1, 1], `ssh connections per host: ${perHost.join(', ')}`);
  const total = results.reduce((a, x) => a + x.total, 0);
  const phases = /phases: (.*)/.exec(r.stdout)?.[1];
  console.log(`# rollout of 4 hosts: ${total} requests through HAProxy, 0 failed; ssh connections per host ${perHost.join('/')}; ${phases}`);
});

test('the third host never becomes healthy: the rollout stops, the switched hosts go back, the fourth is untouched', async () => {
  const [h1, h2, h3, h4] = f.hosts as [typeof f.hosts[0], typeof f.hosts[0], typeof f.hosts[0], typeof f.hosts[0]];
  await h3.writeConfig(service('env: { APP_NEVER_HEALTHY: "1" }'));
  assert.equal((await h3.cli(['reload'])).code, 0);
  const was = await currentReleases();
  const loads = load();
  await Promise.all(loads.map((l) => l.waitFor(20, 20_000)));
  const r = await f.fleet(['deploy', 'web', await f.release('v3'), '--json']);
  const results = await Promise.all(loads.map((l) => l.stop()));
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const result = events.find((e) => e.type === 'result').rollout;
  assert.equal(result.status, 'reverted');
  assert.equal(result.hosts.h1.phase, 'reverted');
  assert.equal(result.hosts.h2.phase, 'reverted');
  assert.equal(result.hosts.h3.phase, 'failed');
  assert.match(result.hosts.h3.error, /healthy/);
  assert.equal(result.hosts.h4.phase, 'untouched');
  assert.match(result.error, /^h3: deploy failed/);
  assert.deepEqual(await currentReleases(), was, 'every host is back on the release it had');
  assert.deepEqual(h4.name, 'h4');
  // h4 was never asked to deploy: its history has only the initial rollout and v2's.
  const hist = JSON.parse((await h4.cli(['history', 'web', '--json'])).stdout);
  assert.equal(hist.length, 2);
  for (const res of results) assert.equal(res.failed, 0, `failed requests: ${res.errors.join('; ')}`);
  assert.equal(results.reduce((a, x) => a + (x.bodies['v3'] ?? 0), 0) > 0, true, 'the canary host served v3 before the revert');
  console.log(`# revert of 2 switched hosts (h1, h2) took ${result.revertMs} ms (target ≤ 2000 ms); ${results.reduce((a, x) => a + x.total, 0)} requests, 0 failed`);
  void h1;
  void h2;
  await h3.writeConfig(service());
  assert.equal((await h3.cli(['reload'])).code, 0);
});

test('a host unreachable at preflight: a clear error naming it with ssh\'s message, nothing changed anywhere', async () => {
  const h4 = f.hosts[3]!;
  const was = await currentReleases();
  const hist = await Promise.all(f.hosts.map(async (h) => JSON.parse((await h.cli(['history', 'web', '--json'])).stdout).length));
  await h4.stopSshd();
  try {
    const r = await f.fleet(['deploy', 'web', await f.release('v4')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /preflight failed on 1 of 4 hosts; nothing was changed/);
    assert.match(r.stderr, /h4: .*ssh h4 failed: .*Connection refused/);
    assert.deepEqual(await currentReleases(), was);
    const after = await Promise.all(f.hosts.map(async (h) => JSON.parse((await h.cli(['history', 'web', '--json'])).stdout).length));
    assert.deepEqual(after, hist, 'no host recorded a deployment');
  } finally {
    await h4.startSshd();
  }
});

test('a canary that turns unhealthy while baking is reverted; the other hosts are never touched', async () => {
  const h1 = f.hosts[0]!;
  // The new release's app exits 1.5 s after it starts listening: healthy at the switch, gone while baking.
  await h1.writeConfig(service('env: { APP_EXIT_AFTER_MS: "1500" }'));
  assert.equal((await h1.cli(['reload'])).code, 0);
  const was = await currentReleases();
  const r = await f.fleet(['deploy', 'web', await f.release('v6'), '--bake', '4s', '--json']);
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  const result = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.type === 'result').rollout;
  assert.equal(result.hosts.h1.phase, 'reverted', JSON.stringify(result.hosts.h1));
  assert.match(result.hosts.h1.error, /while baking|exited|healthy/);
  for (const h of ['h2', 'h3', 'h4']) assert.equal(result.hosts[h].phase, 'untouched');
  assert.deepEqual(await currentReleases(), was);
  await h1.writeConfig(service());
  assert.equal((await h1.cli(['reload'])).code, 0);
});

test('--ref: a commit of the local repository, exported once, the same bytes on every host; status --json shows the fleet', async () => {
  const repo = path.join(f.dir, 'repo');
  const v7 = await f.release('v7');
  const git = (...args: string[]): Promise<unknown> => run('git', ['-C', repo, ...args]);
  await run('git', ['init', '-q', '-b', 'main', repo]);
  await cp(v7, repo, { recursive: true });
  await git('add', '.');
  await git('-c', 'user.name=t', '-c', 'user.email=t@example.com', 'commit', '-q', '-m', 'v7');
  await git('tag', 'v7');
  const commit = String(((await run('git', ['-C', repo, 'rev-parse', 'HEAD'])) as { stdout: string }).stdout).trim();
  await f.writeFleetFile(fleetYaml(f, { rollout: 'batch: 4\ncanary: 0\nbake: 0s' }) + `services:\n  web: { repo: ${repo} }\n`);
  const r = await f.fleet(['deploy', 'web', '--ref', 'v7']);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, new RegExp(`web ← web-${commit.slice(0, 12)} .* from ${repo} v7 \\(${commit}\\)`));
  for (const rel of await currentReleases()) assert.match(rel, new RegExp(`^web-${commit.slice(0, 12)}-`));
  const st = await f.fleet(['status', 'web', '--json']);
  assert.equal(st.code, 0, st.stderr);
  const s = JSON.parse(st.stdout);
  assert.deepEqual(s.hosts.map((h: { host: string }) => h.host), ['h1', 'h2', 'h3', 'h4']);
  for (const h of s.hosts) {
    assert.equal(h.reachable, true);
    assert.equal(h.drain, 'ready');
    assert.match(h.version, /^\d+\.\d+\.\d+/);
    assert.match(h.services[0].current, new RegExp(`^web-${commit.slice(0, 12)}-`));
    assert.match(h.services[0].standby, /^v2-/);
    assert.equal(h.services[0].standbyWarm, true);
    assert.equal(h.services[0].healthy, 1);
  }
  assert.equal(s.rollouts[0].status, 'done');
  await f.writeFleetFile(fleetYaml(f));
});

test('canary analysis: a canary host answering 500s more often than the others is stopped and reverted', async (t) => {
  const h1 = f.hosts[0]!;
  t.after(restoreCanaryHost);
  await h1.writeConfig(service('env: { APP_ERROR_EVERY: "5" }'));
  assert.equal((await h1.cli(['reload'])).code, 0);
  await f.writeFleetFile(fleetYaml(f, { rollout: 'batch: 2\ncanary: 1\nbake: 3s\nanalysis: { min_requests: 20, max_error_rate: 0.02 }' }));
  const was = await currentReleases();
  const loads = load();
  await Promise.all(loads.map((l) => l.waitFor(20, 20_000)));
  const r = await f.fleet(['deploy', 'web', await f.release('v8'), '--json']);
  const results = await Promise.all(loads.map((l) => l.stop()));
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const verdict = events.find((e) => e.type === 'info' && e.message.startsWith('analysis of h1'));
  assert.match(verdict.message, /: fail: 5xx rate \S+ \(\d+\/\d+\) vs stable 0\.00%/);
  const result = events.find((e) => e.type === 'result').rollout;
  assert.equal(result.hosts.h1.phase, 'reverted');
  assert.match(result.hosts.h1.error, /canary analysis failed: 5xx rate/);
  for (const h of ['h2', 'h3', 'h4']) assert.equal(result.hosts[h].phase, 'untouched');
  assert.deepEqual(await currentReleases(), was);
  // Every failed request is the canary's own 500 ("v8 error"): the switch and the revert failed none.
  for (const res of results) for (const e of res.errors) assert.match(e, /^status 500: v8 error/);
});

/** h1 back to the plain service and the fleet file to its defaults, whether the test before passed or not. */
async function restoreCanaryHost(): Promise<void> {
  const h1 = f.hosts[0]!;
  await h1.writeConfig(service());
  const r = await h1.cli(['reload']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  await f.writeFleetFile(fleetYaml(f));
}

test('canary analysis: a canary host whose app is slow (p99 against the other hosts\' over the bake) is stopped and reverted', async (t) => {
  const h1 = f.hosts[0]!;
  t.after(restoreCanaryHost);
  // 1.5 s: the other hosts' p99 would have to pass 1 s (limit 1.5×) for the verdict to go the other way.
  await h1.writeConfig(service('env: { APP_DELAY_MS: "1500" }'));
  assert.equal((await h1.cli(['reload'])).code, 0);
  await f.writeFleetFile(fleetYaml(f, { rollout: 'batch: 2\ncanary: 1\nbake: 4s\nanalysis: { min_requests: 10, max_p99_ratio: 1.5, p99_floor: 100ms }' }));
  const was = await currentReleases();
  // Fast requests only: the other hosts' p99 is a few ms, the canary's at least its 1.5 s delay.
  const l = startLoad({ url: `${f.haproxy!.url}/`, concurrency: 6, keepAlive: true, maxMs: 120_000 });
  await l.waitFor(20, 20_000);
  const r = await f.fleet(['deploy', 'web', await f.release('v9'), '--json']);
  const res = await l.stop();
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  const events = r.stdout.trim().split('\n').map((line) => JSON.parse(line));
  const verdict = events.find((e) => e.type === 'info' && e.message.startsWith('analysis of h1'));
  assert.ok(verdict, `no analysis event:\n${r.stdout}`);
  // Failed thresholds come first: the latency, with both sides' p99 (bucket bounds) and the limit, max(1.5 × others', 100 ms).
  const m = /: fail: p99 (\d+)ms vs stable (\d+)ms; limit (\d+)ms/.exec(verdict.message);
  assert.ok(m, verdict.message);
  t.diagnostic(verdict.message);
  assert.ok(Number(m[1]) >= 1500, `canary p99 ${m[1]} ms`);
  assert.ok(Number(m[2]) < Number(m[1]), `the other hosts' p99 ${m[2]} ms`);
  assert.match(verdict.message, /5xx rate 0\.00%/);
  const result = events.find((e) => e.type === 'result').rollout;
  assert.equal(result.hosts.h1.phase, 'reverted');
  assert.match(result.hosts.h1.error, /canary analysis failed: p99/);
  for (const h of ['h2', 'h3', 'h4']) assert.equal(result.hosts[h].phase, 'untouched');
  assert.deepEqual(await currentReleases(), was);
  assert.equal(res.failed, 0, `${res.failed} failed: ${res.errors.join(' | ')}`);
  assert.ok((res.bodies['v9'] ?? 0) > 0, `the canary served v9: ${JSON.stringify(res.bodies)}`);
});

test('a changed host key is refused with ssh\'s own message', async () => {
  const h2 = f.hosts[1]!;
  await h2.changeHostKey();
  const r = await f.fleet(['status']);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /h2 +(- +){6}unreachable: .*REMOTE HOST IDENTIFICATION HAS CHANGED.*Host key verification failed/);
  const d = await f.fleet(['deploy', 'web', await f.release('v5')]);
  assert.equal(d.code, 1);
  assert.match(d.stderr, /h2: .*Host key verification failed/);
});
