// The Quick start: the daemon serving the example app on 127.0.0.1:8080, then a
// deploy of v2 under load with zero failed requests. Run with `npm run example`.
// Pass --keep to leave the daemon running afterwards (stop it with
// `npm run baton -- shutdown --stop-instances --config examples/baton.yaml`).

import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { startLoad } from '../test/helpers/load.ts';

const here = import.meta.dirname;
const baton = path.join(here, '..', 'bin', 'baton.js');
const config = path.join(here, 'baton.yaml');
const stateDir = path.join(here, 'state');
const keep = process.argv.includes('--keep');

function cli(args: string[]): Promise<number> {
  console.log(`\n$ baton ${args.join(' ')}`);
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [baton, ...args, '--config', config], { stdio: 'inherit' });
    c.on('exit', (code) => resolve(code ?? 1));
  });
}

async function main(): Promise<number> {
  // A fresh state each run, so the example always starts from nothing.
  if (existsSync(path.join(stateDir, 'baton.sock')) && (await cli(['shutdown', '--stop-instances'])) === 0) {
    await new Promise((r) => setTimeout(r, 1500));
  }
  await rm(stateDir, { recursive: true, force: true });

  console.log('$ baton daemon --config examples/baton.yaml   (logs: examples/state/daemon.log)');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(stateDir, { recursive: true });
  const log = openSync(path.join(stateDir, 'daemon.log'), 'a');
  const daemon = spawn(process.execPath, [baton, 'daemon', '--config', config], { stdio: ['ignore', log, log], detached: keep });
  closeSync(log);
  let exited = false;
  daemon.on('exit', () => (exited = true));
  for (let i = 0; !existsSync(path.join(stateDir, 'baton.sock')); i++) {
    if (exited || i > 100) {
      console.error('the daemon did not start; see examples/state/daemon.log');
      return 1;
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  if ((await cli(['deploy', 'web', path.join(here, 'app-v1')])) !== 0) return 1;
  console.log('\n$ curl http://127.0.0.1:8080/');
  process.stdout.write(await (await fetch('http://127.0.0.1:8080/')).text());

  console.log('\nStarting 8 keep-alive clients against http://127.0.0.1:8080/ …');
  const load = startLoad({ url: 'http://127.0.0.1:8080/', concurrency: 8, maxMs: 120_000 });
  await load.waitFor(500, 20_000);
  const deployed = await cli(['deploy', 'web', path.join(here, 'app-v2')]);
  const n = load.snapshot().total;
  await load.waitFor(n + 500, 20_000);
  const r = await load.stop();
  console.log(`\nLoad during the deploy: ${r.total} requests, ${r.failed} failed; answered by v1: ${r.bodies['hello from v1'] ?? 0}, by v2: ${r.bodies['hello from v2'] ?? 0}`);
  if (r.failed) console.log(`failures: ${r.errors.slice(0, 5).join('; ')}`);
  await cli(['status', 'web']);

  if (keep) {
    daemon.unref();
    console.log('\nThe daemon keeps running on 127.0.0.1:8080 (try `npm run baton -- rollback web --config examples/baton.yaml`).');
  } else {
    await cli(['shutdown', '--stop-instances']);
    await new Promise((resolve) => (exited ? resolve(null) : daemon.once('exit', resolve)));
  }
  return deployed === 0 && r.failed === 0 ? 0 : 1;
}

process.exitCode = await main();
