// A 4-host rolling deploy through real OpenSSH and a real HAProxy (the test
// harness: 4 loopback hosts, each a real sshd + its own baton daemon), under
// load through HAProxy: time per phase (pack, preflight, ship, switch and bake
// per batch), failed requests, ssh connections opened per host, and the time
// to revert two switched hosts when the third never becomes healthy.
//
//   node bench/fleet.ts [--rounds N]

import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createFleet, fleetServiceYaml, type TestFleet } from '../test/helpers/fleet-hosts.ts';
import { fleetYaml } from '../test/helpers/fleet-file.ts';
import { startLoad } from '../test/helpers/load.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' } } });
const ROUNDS = Number(values.rounds);

interface Round {
  kind: 'rollout' | 'revert';
  code: number | null;
  totalMs: number;
  phases: Record<string, number>;
  revertMs: number | null;
  connections: number[];
  requests: number;
  failed: number;
}

async function round(f: TestFleet, version: string, kind: Round['kind']): Promise<Round> {
  const url = `${f.haproxy!.url}/`;
  const loads = [
    startLoad({ url, concurrency: 3, keepAlive: true, mix: [{ path: '/slow?ms=300', every: 7 }], maxMs: 300_000 }),
    startLoad({ url, concurrency: 2, keepAlive: false, thinkMs: 5, maxMs: 300_000 }),
  ];
  await Promise.all(loads.map((l) => l.waitFor(20, 20_000)));
  const before = await Promise.all(f.hosts.map((h) => h.sshConnections()));
  const t0 = Date.now();
  const r = await f.fleet(['deploy', 'web', await f.release(version), '--json'], { timeoutMs: 300_000 });
  const totalMs = Date.now() - t0;
  const results = await Promise.all(loads.map((l) => l.stop()));
  const after = await Promise.all(f.hosts.map((h) => h.sshConnections()));
  const result = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.type === 'result')?.rollout;
  return {
    kind,
    code: r.code,
    totalMs,
    phases: result?.phases ?? {},
    revertMs: result?.revertMs ?? null,
    connections: after.map((a, i) => a - before[i]!),
    requests: results.reduce((a, x) => a + x.total, 0),
    failed: results.reduce((a, x) => a + x.failed, 0),
  };
}

const shared = await mkdtemp(path.join(os.tmpdir(), 'baton-fleet-bench-'));
const service = (extra = ''): string =>
  fleetServiceYaml({ startTimeout: '3s', extra: `hooks: { migrate: "echo $BATON_RELEASE >> ${shared}/migrations.log" }${extra ? `\n${extra}` : ''}` });
const f = await createFleet({ hosts: 4, services: () => service(), haproxy: { agentCheck: true } });
const rounds: Round[] = [];
try {
  await f.writeFleetFile(fleetYaml(f, { rollout: 'batch: 2\ncanary: 1\nbake: 1s' }));
  const first = await f.fleet(['deploy', 'web', await f.release('v0'), '--batch', '4', '--canary', '0', '--bake', '0s']);
  if (first.code !== 0) throw new Error(`first rollout failed: ${first.stderr}`);
  for (let i = 1; i <= ROUNDS; i++) rounds.push(await round(f, `v${i}`, 'rollout'));
  // The third host never becomes healthy: the canary and h2 are switched, then reverted.
  const h3 = f.hosts[2]!;
  await h3.writeConfig(service('env: { APP_NEVER_HEALTHY: "1" }'));
  await h3.cli(['reload']);
  for (let i = 1; i <= ROUNDS; i++) rounds.push(await round(f, `bad${i}`, 'revert'));
} finally {
  await f.cleanup();
  await rm(shared, { recursive: true, force: true });
}

const fmt = (ms: number | undefined): string => (ms === undefined ? '-' : `${(ms / 1000).toFixed(2)} s`);
const phaseNames = ['pack', 'preflight', 'ship', 'switch canary', 'bake canary', 'switch batch 2', 'bake batch 2', 'switch batch 3', 'bake batch 3', 'revert'];
console.log(`\n4 hosts (batch 2, canary 1, bake 1 s), ${ROUNDS} rounds of each; node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}\n`);
console.log(`| round | exit | total | ${phaseNames.join(' | ')} | ssh conns/host | requests | failed |`);
console.log(`|${'---|'.repeat(phaseNames.length + 6)}`);
for (const [i, r] of rounds.entries()) {
  console.log(`| ${r.kind} ${i + 1} | ${r.code} | ${fmt(r.totalMs)} | ${phaseNames.map((p) => fmt(r.phases[p])).join(' | ')} | ${r.connections.join('/')} | ${r.requests} | ${r.failed} |`);
}
const reverts = rounds.filter((r) => r.kind === 'revert').map((r) => r.revertMs ?? NaN);
console.log(`\nrevert of 2 switched hosts: ${reverts.map((x) => `${x} ms`).join(', ')} (target ≤ 2000 ms)`);
console.log(`failed requests: ${rounds.reduce((a, r) => a + r.failed, 0)} of ${rounds.reduce((a, r) => a + r.requests, 0)}`);
