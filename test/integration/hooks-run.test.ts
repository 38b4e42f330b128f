// Running hooks as real process groups: output, exit status, env and cwd,
// timeouts and aborts that kill the whole tree, and commands that cannot start.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runHook, hookError, HOOK_KILL_GRACE_MS, type HookRun, type HookSpec } from '../../src/hooks/index.ts';
import { isBatonError } from '../../src/core/errors.ts';
import { isGroupAlive, readProcStat, isDeadState } from '../../src/core/proc.ts';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-hooks-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Kill whatever group a test hook left behind (only if a test failed half-way). */
function cleanupGroup(t: TestContext, pgid: () => number | null): void {
  t.after(() => {
    const g = pgid();
    if (g !== null && g > 1 && isGroupAlive(g)) {
      try {
        process.kill(-g, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

interface Captured {
  run: HookRun;
  lines: { line: string; stream: 'stdout' | 'stderr' }[];
  log: string[];
}

async function hook(t: TestContext, command: string, over: { timeoutMs?: number; env?: Record<string, string>; cwd?: string; signal?: AbortSignal; onLine?: (line: string) => void } = {}): Promise<Captured> {
  const dir = await tempDir(t);
  const logFile = join(dir, 'logs', 'hook.log');
  const lines: Captured['lines'] = [];
  const spec: HookSpec = { name: 'build', command, timeoutMs: over.timeoutMs ?? 10_000 };
  const run = await runHook(spec, {
    cwd: over.cwd ?? dir,
    env: over.env ?? {},
    logFile,
    signal: over.signal,
    onLine: (line, stream) => {
      lines.push({ line, stream });
      over.onLine?.(line);
    },
  });
  const text = await readFile(logFile, 'utf8');
  return { run, lines, log: text.split('\n').slice(0, -1) };
}

function isAlive(pid: number): boolean {
  const stat = readProcStat(pid);
  return stat !== null && !isDeadState(stat.state);
}

test('output lines arrive in order through onLine and in the log file; exit 0', async (t) => {
  const { run, lines, log } = await hook(t, 'for i in 1 2 3 4 5; do echo "line $i"; done; echo done');
  const expected = ['line 1', 'line 2', 'line 3', 'line 4', 'line 5', 'done'];
  assert.deepEqual(lines.map((l) => l.line), expected);
  assert.ok(lines.every((l) => l.stream === 'stdout'));
  assert.deepEqual(log, expected);
  assert.deepEqual(run.tail, expected);
  assert.equal(run.exitCode, 0);
  assert.equal(run.signal, null);
  assert.equal(run.timedOut, false);
  assert.equal(run.name, 'build');
  assert.ok(Number.isFinite(run.durationMs) && run.durationMs >= 0);
  assert.equal(hookError(run), null);
});

test('exit 2 is reported, with a HOOK_FAILED error carrying the tail', async (t) => {
  const { run } = await hook(t, 'echo preparing; echo "something broke" >&2; exit 2');
  assert.equal(run.exitCode, 2);
  const err = hookError(run);
  assert.ok(err);
  assert.equal(err.code, 'HOOK_FAILED');
  assert.match(err.message, /^build hook failed \(exit 2\) after \d+(ms|\.\ds)$/);
  assert.deepEqual(err.details, ['preparing', 'something broke']);
});

test('interleaved stdout and stderr lines are both captured, in arrival order', async (t) => {
  const { lines, log } = await hook(t, 'echo o1; sleep 0.05; echo e1 >&2; sleep 0.05; echo o2; sleep 0.05; echo e2 >&2; sleep 0.05; printf "o3-no-newline"');
  assert.deepEqual(lines, [
    { line: 'o1', stream: 'stdout' },
    { line: 'e1', stream: 'stderr' },
    { line: 'o2', stream: 'stdout' },
    { line: 'e2', stream: 'stderr' },
    { line: 'o3-no-newline', stream: 'stdout' },
  ]);
  assert.deepEqual(log, ['o1', 'e1', 'o2', 'e2', 'o3-no-newline']);
});

test('only the last 40 lines are kept in the tail; the log has everything', async (t) => {
  const { run, log, lines } = await hook(t, 'i=0; while [ $i -lt 500 ]; do echo "n$i"; i=$((i+1)); done');
  assert.equal(lines.length, 500);
  assert.equal(log.length, 500);
  assert.equal(run.tail.length, 40);
  assert.equal(run.tail[0], 'n460');
  assert.equal(run.tail[39], 'n499');
});

test('env is process.env plus the given env; cwd is respected', async (t) => {
  const dir = await tempDir(t);
  process.env.BATON_HOOK_TEST_INHERITED = 'from-parent';
  t.after(() => delete process.env.BATON_HOOK_TEST_INHERITED);
  const { lines } = await hook(t, 'echo "$BATON_RELEASE|$BATON_HOOK_TEST_INHERITED|$SPACED"; pwd; test -t 0 || echo no-tty-stdin; cat; echo after-cat', {
    cwd: dir,
    env: { BATON_RELEASE: 'r42', SPACED: 'a b  c' },
  });
  assert.deepEqual(lines.map((l) => l.line), ['r42|from-parent|a b  c', await realpath(dir), 'no-tty-stdin', 'after-cat']);
});

test('a cwd that does not exist: rejects HOOK_FAILED with a clear message, and runs nothing', async (t) => {
  const dir = await tempDir(t);
  const missing = join(dir, 'nope');
  const marker = join(dir, 'ran');
  await assert.rejects(
    runHook({ name: 'migrate', command: `touch ${marker}`, timeoutMs: 1000 }, { cwd: missing, env: {}, logFile: join(dir, 'h.log'), onLine: () => {} }),
    (err: unknown) => {
      assert.ok(isBatonError(err));
      assert.equal(err.code, 'HOOK_FAILED');
      assert.equal(err.message, `migrate hook could not be started: working directory ${missing} does not exist`);
      return true;
    },
  );
  await assert.rejects(readFile(marker));
  // A command that starts but is not found is a failed run, not a start failure.
  const { run } = await hook(t, 'no-such-command-baton-test');
  assert.equal(run.exitCode, 127);
  assert.match(run.tail.join('\n'), /not found/);
});

test('a timeout kills the whole process tree (SIGTERM to the group)', async (t) => {
  let pgid: number | null = null;
  cleanupGroup(t, () => pgid);
  const started = Date.now();
  const { run, lines } = await hook(t, 'echo $$; sleep 100 & echo $!; sleep 100; wait', {
    timeoutMs: 500,
    onLine: (l) => (pgid ??= Number(l)),
  });
  const took = Date.now() - started;
  const [shell, background] = lines.map((l) => Number(l.line));
  assert.ok(shell && background, `pids printed: ${JSON.stringify(lines)}`);
  assert.equal(run.timedOut, true);
  assert.equal(run.exitCode, null);
  assert.equal(run.signal, 'SIGTERM');
  assert.ok(took >= 500, `took ${took} ms, less than the timeout`); // SIGTERM sufficed: signal checked above
  assert.ok(!isGroupAlive(shell), 'no process of the group survives');
  assert.ok(!isAlive(background), 'the background sleep is gone');
  assert.equal(hookError(run)?.message, 'build hook timed out after 500ms (killed)');
  assert.ok(run.tail.some((l) => l.startsWith('[baton] timed out')), 'the log says why it stopped');
});

test('a tree that ignores SIGTERM is SIGKILLed 5 s later', async (t) => {
  let pgid: number | null = null;
  cleanupGroup(t, () => pgid);
  const started = Date.now();
  const { run, lines } = await hook(t, "trap '' TERM; echo $$; sleep 100 & echo $!; sleep 100; wait", {
    timeoutMs: 300,
    onLine: (l) => (pgid ??= Number(l)),
  });
  const took = Date.now() - started;
  const [shell, background] = lines.map((l) => Number(l.line));
  assert.equal(run.timedOut, true);
  assert.equal(run.signal, 'SIGKILL');
  assert.ok(took >= 300 + HOOK_KILL_GRACE_MS - 100, `took ${took} ms: SIGKILL came before the grace period ended`);
  assert.ok(!isGroupAlive(shell!));
  assert.ok(!isAlive(background!));
  assert.ok(run.tail.some((l) => l.includes('SIGKILL')));
});

test('abort through the signal kills the group; the run resolves as aborted', async (t) => {
  let pgid: number | null = null;
  cleanupGroup(t, () => pgid);
  const ac = new AbortController();
  const { run, lines } = await hook(t, 'echo $$; sleep 100 & sleep 100; wait', {
    signal: ac.signal,
    onLine: (l) => {
      pgid ??= Number(l);
      ac.abort();
    },
  });
  assert.equal(run.aborted, true);
  assert.equal(run.timedOut, false);
  assert.ok(!isGroupAlive(Number(lines[0]!.line)));
  assert.match(hookError(run)?.message ?? '', /^build hook aborted after /);
  // Already aborted: nothing is started.
  const dir = await tempDir(t);
  await assert.rejects(
    runHook({ name: 'smoke', command: 'true', timeoutMs: 1000 }, { cwd: dir, env: {}, logFile: join(dir, 'x.log'), onLine: () => {}, signal: AbortSignal.abort() }),
    (err: unknown) => isBatonError(err) && err.code === 'HOOK_FAILED' && /aborted before it started/.test(err.message),
  );
});

test('background children: short ones may finish, long ones are stopped after the shell exits', async (t) => {
  const a = await hook(t, '(sleep 0.2; echo late) & echo early');
  assert.deepEqual(a.lines.map((l) => l.line), ['early', 'late']);
  assert.equal(a.run.exitCode, 0);

  let pgid: number | null = null;
  cleanupGroup(t, () => pgid);
  const b = await hook(t, 'echo $$; sleep 100 >/dev/null 2>&1 & echo $!; exit 0', { onLine: (l) => (pgid ??= Number(l)) });
  const [shell, background] = b.lines.map((l) => Number(l.line));
  assert.equal(b.run.exitCode, 0);
  assert.equal(b.run.timedOut, false);
  // Not waited for: the run ended while the leftover still ran, and baton stopped it (tail below).
  assert.ok(!isGroupAlive(shell!));
  assert.ok(!isAlive(background!));
  assert.ok(b.run.tail.some((l) => l.includes('still running')));
});

test('very long lines are split at 8 KiB; binary output does not break it', async (t) => {
  const { run, lines, log } = await hook(t, `head -c 20000 /dev/zero | tr '\\0' x; echo; printf '\\377\\376\\000\\200bin\\n'; head -c 30000 /dev/urandom; echo; echo end`);
  assert.equal(run.exitCode, 0);
  assert.deepEqual(lines.slice(0, 3).map((l) => l.line.length), [8192, 8192, 3616]);
  assert.ok(lines[3]!.line.endsWith('bin'));
  assert.equal(lines.at(-1)!.line, 'end');
  assert.ok(lines.every((l) => Buffer.byteLength(l.line) <= 8192 * 3));
  assert.equal(log.at(-1), 'end');
});
