import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createDaemon, type TestDaemon } from '../helpers/daemon.ts';

/** The environment a process was started with (what glibc read), from /proc. */
function startEnv(pid: number): Map<string, string> {
  const env = new Map<string, string>();
  for (const kv of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) env.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return env;
}

async function instancePid(d: TestDaemon): Promise<number> {
  const dep = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(dep.code, 0, dep.stdout + dep.stderr);
  return (await d.status('web')).services[0].instances[0].pid as number;
}

test('the daemon runs with two malloc arenas trimmed past 128 KiB; the apps it starts do not inherit the settings', async (t) => {
  const d = await createDaemon();
  t.after(() => d.cleanup());
  const daemon = startEnv(d.proc.pid!);
  assert.equal(daemon.get('MALLOC_ARENA_MAX'), '2');
  assert.equal(daemon.get('MALLOC_TRIM_THRESHOLD_'), '131072');
  const app = startEnv(await instancePid(d));
  assert.equal(app.get('MALLOC_ARENA_MAX'), undefined);
  assert.equal(app.get('MALLOC_TRIM_THRESHOLD_'), undefined);
});

test("an operator's own MALLOC_ARENA_MAX is kept, for the daemon and its apps", async (t) => {
  const before = process.env['MALLOC_ARENA_MAX'];
  process.env['MALLOC_ARENA_MAX'] = '4';
  let d: TestDaemon;
  try {
    d = await createDaemon();
  } finally {
    if (before === undefined) delete process.env['MALLOC_ARENA_MAX'];
    else process.env['MALLOC_ARENA_MAX'] = before;
  }
  t.after(() => d.cleanup());
  assert.equal(startEnv(d.proc.pid!).get('MALLOC_ARENA_MAX'), '4');
  assert.equal(startEnv(await instancePid(d)).get('MALLOC_ARENA_MAX'), '4');
});
