// All benchmarks in sequence (`npm run bench`), each in its own process so each
// cleans up after itself. Arguments are passed on (e.g. `npm run bench -- --quick`).
// Exit code: 0 when every bench met its targets, 1 otherwise.

import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

const benches = ['deploy.ts', 'push.ts', 'proxy.ts', 'canary.ts', 'memory.ts'];
const args = process.argv.slice(2);
let current: ChildProcess | null = null;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    // The child cleans up on the signal (its own handler), then exits.
    current?.kill(sig);
    process.exitCode = 130;
  });
}

const results: [string, number | null][] = [];
for (const b of benches) {
  console.log(`\n======== bench/${b} ${args.join(' ')}\n`);
  const t0 = Date.now();
  const code = await new Promise<number | null>((resolve) => {
    current = spawn(process.execPath, [path.join(import.meta.dirname, b), ...args], { stdio: 'inherit' });
    current.on('exit', (c) => resolve(c));
  });
  current = null;
  results.push([b, code]);
  console.log(`\n(bench/${b}: exit ${code}, ${Math.round((Date.now() - t0) / 1000)} s)`);
  if (process.exitCode === 130) break;
}
console.log('\n======== summary');
for (const [b, code] of results) console.log(`  bench/${b.padEnd(10)} ${code === 0 ? 'all targets met' : code === 1 ? 'a target missed (see above)' : `failed (exit ${code})`}`);
process.exitCode = results.every(([, c]) => c === 0) && results.length === benches.length ? 0 : 1;
