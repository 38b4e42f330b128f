// Instance logs for the operator (issue 8): `baton logs --follow` goes on with
// the new instances after a deploy; `baton logs` shows the output of instances
// that crashed in a failed deploy; every line has a timestamp; files are
// rotated by size keeping `logs.keep` older ones (by the log writer beside
// the instance, so also while no daemon runs).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createDaemon, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const STAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} /;
const MAX = 4096;

let d: TestDaemon;
before(async () => {
  d = await createDaemon({ services: serviceYaml({ extra: `logs: { max_size: 4KB, keep: 2 }` }) });
});
after(async () => {
  await d?.cleanup();
});

test('logs --follow follows the new instances after a deploy, with timestamps', async (t) => {
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
  const follower = spawn(process.execPath, [path.join(ROOT, 'bin/baton.js'), 'logs', 'web', '--follow', '--lines', '1', '--config', d.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => follower.kill('SIGKILL'));
  let out = '';
  follower.stdout.on('data', (b) => (out += b));
  // The last line of each v1 instance comes first: then the follower is attached.
  await waitUntil('the follower to print the v1 instances\' last lines', () => (out.match(/app v1 listening on/g) ?? []).length === 2, 10_000);
  const deploy = await d.cli(['deploy', 'web', await d.release('v2')]);
  assert.equal(deploy.code, 0, deploy.stderr);
  const v2 = (await d.status('web')).services[0].instances.filter((i: { release: string; role: string }) => i.role === 'current').map((i: { id: string }) => i.id);
  assert.equal(v2.length, 2);
  await waitUntil('the follower to show both new instances starting', () => v2.every((id: string) => new RegExp(`^${id} \\| \\S+ app v2 listening on`, 'm').test(out)), 10_000);
  for (const line of out.trim().split('\n')) assert.match(line.slice(line.indexOf(' | ') + 3), STAMP, `a line without a timestamp: ${line}`);
});

test('logs shows the output of instances that crashed in a failed deploy', async () => {
  const r = await d.cli(['deploy', 'web', await d.release('v3', { APP_CRASH_ON_START: '1' })]);
  assert.notEqual(r.code, 0, 'the deploy fails');
  const logs = await d.cli(['logs', 'web', '--lines', '5']);
  assert.equal(logs.code, 0, logs.stderr);
  assert.match(logs.stdout, /^web-[0-9a-f]+ \| \S+ app v3: crashing on start as asked$/m, logs.stdout);
  // And the live instances' lines come after them.
  assert.ok(logs.stdout.lastIndexOf('crashing on start') < logs.stdout.lastIndexOf('app v2 listening'), logs.stdout);
});

test('instance logs are rotated by size, keeping logs.keep older files', async () => {
  // A release that writes ~30 KB at start, then serves.
  const dir = path.join(d.dir, 'src', 'chatty');
  await mkdir(dir, { recursive: true });
  await writeFile(
    path.join(dir, 'server.mjs'),
    `for (let i = 0; i < 300; i++) console.log('chatty line ' + i + ' ' + 'x'.repeat(80));\nawait import(${JSON.stringify(path.join(ROOT, 'test/fixtures/app.mjs'))});\n`,
  );
  assert.equal((await d.cli(['deploy', 'web', dir])).code, 0);
  const ids = (await d.status('web')).services[0].instances.filter((i: { role: string }) => i.role === 'current').map((i: { id: string }) => i.id);
  const logDir = path.join(d.dir, 'state', 'logs', 'web');
  for (const id of ids) {
    const base = path.join(logDir, `${id}.log`);
    await waitUntil(`${id}'s log to be rotated twice`, () => existsSync(`${base}.2`), 10_000);
    await waitUntil(`${id} to log that it listens`, () => existsSync(base) && readFileSync(base, 'utf8').includes('listening on'), 10_000);
    const files = readdirSync(logDir).filter((f) => f.startsWith(`${id}.log`)).sort();
    assert.deepEqual(files, [`${id}.log`, `${id}.log.1`, `${id}.log.2`], 'keep: 2 older files, no more');
    for (const f of files) {
      assert.ok(statSync(path.join(logDir, f)).size < MAX + 200, `${f} is about max_size at most`);
      for (const line of readFileSync(path.join(logDir, f), 'utf8').trim().split('\n')) assert.match(line, STAMP);
    }
    // Oldest to newest: .2, .1, the current file, with no line missing between them.
    const numbers = [`${base}.2`, `${base}.1`, base].flatMap((f) => [...readFileSync(f, 'utf8').matchAll(/chatty line (\d+) /g)].map((m) => Number(m[1])));
    assert.ok(numbers.length > 0);
    assert.deepEqual(numbers, numbers.map((_, i) => numbers[0]! + i), 'consecutive lines across the rotated files');
    assert.equal(numbers.at(-1), 299);
  }
});
