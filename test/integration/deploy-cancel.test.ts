// Cancelling a deploy before its switch (`baton abort`, Ctrl-C of `baton
// deploy`), and what Ctrl-C means after the switch.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import WebSocket from 'ws';
import { createDaemon, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad } from '../helpers/load.ts';

const BATON = path.resolve(import.meta.dirname, '../../bin/baton.js');

let d: TestDaemon;
const children: ChildProcess[] = [];
before(async () => {
  d = await createDaemon({ services: serviceYaml({ instances: 2 }).replace('drain_timeout: 5s', 'drain_timeout: 30s') });
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
});
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await d?.cleanup();
});

const tag = (release: string): string => /(?:^|-)(v\d+)-\d+(?:-|$)/.exec(release)?.[1] ?? release;

/** `baton deploy` as a person runs it, to be interrupted: its output lines as they come, and its end. */
function deployInteractive(dir: string): { child: ChildProcess; lines: any[]; stderr: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [BATON, 'deploy', 'web', dir, '--json', '--config', d.configFile], { cwd: d.dir, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const lines: any[] = [];
  let buf = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => {
    buf += s;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      lines.push(JSON.parse(buf.slice(0, nl)));
      buf = buf.slice(nl + 1);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, lines, stderr: () => err, exit };
}

async function history(): Promise<any[]> {
  return JSON.parse((await d.cli(['history', 'web', '--json'])).stdout);
}

test('baton abort cancels a blue/green deploy before its switch: its instances are stopped by the time abort returns, 0 failed', async (t) => {
  const load = startLoad({ url: d.url + '/', concurrency: 3, maxMs: 60_000 });
  t.after(() => load.stop());
  await load.waitFor(30, 10_000);
  const deploy = d.cli(['deploy', 'web', await d.release('v2', { APP_START_FILE: path.join(d.dir, 'never') })]);
  await waitUntil('the deploy to wait for health checks', async () => (await history())[0]?.state === 'verifying', 15_000, 100);
  const a = await d.cli(['abort', 'web']);
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stdout, /deployment #\d+ cancelled before its switch/);
  const s = (await d.status('web')).services[0];
  assert.deepEqual(s.instances.map((i: any) => tag(i.release)), ['v1', 'v1'], 'the new instances are gone when abort returns');
  assert.equal(tag(s.currentRelease), 'v1');
  const r = await deploy;
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /cancelled: aborted by the operator/);
  const h = (await history())[0];
  assert.equal(h.state, 'failed');
  assert.match(h.error, /cancelled/);
  const n = load.snapshot().total;
  await load.waitFor(n + 30, 10_000);
  const res = await load.stop();
  assert.equal(res.failed, 0, res.errors.join('; '));
  assert.deepEqual(Object.keys(res.bodies), ['v1']);
});

test('Ctrl-C of baton deploy before the switch cancels the deploy and exits 130', async () => {
  const run = deployInteractive(await d.release('v3', { APP_START_FILE: path.join(d.dir, 'never') }));
  await waitUntil('the deploy to start its instances', () => run.lines.some((l) => l.type === 'event' && l.event.step === 'verifying'), 15_000);
  run.child.kill('SIGINT');
  assert.equal(await run.exit, 130, run.stderr());
  assert.match(run.stderr(), /interrupted: cancelling deployment #\d+ of web \(nothing has switched yet\)/);
  assert.equal(run.lines.at(-1).type, 'result');
  assert.equal(run.lines.at(-1).outcome.state, 'failed');
  assert.equal(run.lines.at(-1).outcome.error.code, 'DEPLOY_CANCELLED');
  assert.match(run.lines.at(-1).outcome.error.message, /interrupted by the operator \(Ctrl-C of `baton deploy`\)/);
  const s = (await d.status('web')).services[0];
  assert.deepEqual(s.instances.map((i: any) => tag(i.release)), ['v1', 'v1']);
  assert.equal((await history())[0].state, 'failed');
});

test('Ctrl-C after the switch leaves the deploy to drain in the daemon and says how to roll back', async (t) => {
  const ws = new WebSocket(d.url.replace('http', 'ws') + '/ws'); // holds v1's drain open
  t.after(() => ws.terminate());
  await new Promise((resolve, reject) => {
    ws.once('message', resolve);
    ws.once('error', reject);
  });
  const run = deployInteractive(await d.release('v4'));
  await waitUntil('the switch', () => run.lines.some((l) => l.type === 'event' && l.event.milestone === 'switched'), 15_000);
  run.child.kill('SIGINT');
  assert.equal(await run.exit, 130, run.stderr());
  assert.match(run.stderr(), /interrupted after the switch: the deploy of web goes on in the daemon .*`baton rollback web`/);
  const s = (await d.status('web')).services[0];
  assert.equal(tag(s.currentRelease), 'v4');
  assert.deepEqual(s.draining.map((x: any) => tag(x.release)), ['v1'], 'the old release still drains');
  ws.close();
  await waitUntil('the deploy to end done', async () => (await history())[0].state === 'done', 20_000);
});
