// GitCache against real repositories made by the tests (local paths, no network).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { GitCache } from '../../src/git/index.ts';
import type { BatonError } from '../../src/core/errors.ts';
import { REAL_GIT, git } from '../helpers/git-isolated.ts';


async function commit(repo: string, file: string, content: string, subject: string, date = '2024-03-04T05:06:07Z'): Promise<string> {
  await mkdir(path.dirname(path.join(repo, file)), { recursive: true });
  await writeFile(path.join(repo, file), content);
  git(repo, ['add', '--', file]);
  git(repo, ['commit', '-q', '-m', subject], { GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date });
  return git(repo, ['rev-parse', 'HEAD']);
}

async function tmpdir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'baton-gitcache-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A source repository with main (2 commits), a branch, a lightweight and an annotated tag. */
async function makeSource(dir: string) {
  const src = path.join(dir, 'src');
  await mkdir(src);
  git(src, ['init', '-q']);
  const c1 = await commit(src, 'app.js', 'v1\n', 'first commit', '2024-03-04T05:06:07Z');
  git(src, ['tag', 'light']);
  git(src, ['tag', '-a', 'v1.0', '-m', 'release 1.0'], { GIT_COMMITTER_DATE: '2024-03-04T05:06:08Z' });
  const c2 = await commit(src, 'app.js', 'v2\n', 'second commit\n\nwith a body', '2024-03-05T00:00:00Z');
  git(src, ['branch', 'feature/x', c1]);
  return { src, c1, c2 };
}

/** A git wrapper that logs every invocation's subcommand (and brackets fetches, slowed down by `fetchDelay`). */
async function wrapperGit(dir: string, fetchDelay = '0'): Promise<{ bin: string; log: () => string[]; clear: () => Promise<void> }> {
  const logFile = path.join(dir, 'git.log');
  const bin = path.join(dir, 'git-wrapper.sh');
  await writeFile(
    bin,
    `#!/bin/sh
LOG='${logFile}'
for a in "$@"; do
  case "$a" in
    -c|--git-dir=*|protocol.*|core.*|log.*|tar.*) ;;
    fetch)
      echo "fetch-start $$" >> "$LOG"; sleep ${fetchDelay}; '${REAL_GIT}' "$@"; rc=$?; echo "fetch-end $$" >> "$LOG"; exit $rc ;;
    *) echo "$a" >> "$LOG"; exec '${REAL_GIT}' "$@" ;;
  esac
done
exec '${REAL_GIT}' "$@"
`,
  );
  await chmod(bin, 0o755);
  return {
    bin,
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').filter(Boolean) : []),
    clear: () => writeFile(logFile, ''),
  };
}

function isCode(code: string, ...patterns: RegExp[]) {
  return (err: unknown) => {
    const e = err as BatonError;
    assert.equal(e.code, code, e.message);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  };
}

test('resolve: branch head, lightweight tag, annotated tag, full and abbreviated sha, qualified refs', { timeout: 20_000 }, async (t) => {
  const dir = await tmpdir(t);
  const { src, c1, c2 } = await makeSource(dir);
  const cache = new GitCache({ cacheDir: path.join(dir, 'cache'), source: { repo: src, branch: 'main' } });

  const head = await cache.resolve();
  assert.deepEqual(head, {
    commit: c2,
    shortCommit: c2.slice(0, 12),
    author: 'Ada Lovelace <ada@example.com>',
    authoredAt: Date.parse('2024-03-05T00:00:00Z'),
    subject: 'second commit',
    ref: 'main',
  });
  assert.equal((await cache.resolve('feature/x')).commit, c1);
  assert.equal((await cache.resolve('light')).commit, c1);
  const annotated = await cache.resolve('v1.0');
  assert.equal(annotated.commit, c1, 'annotated tag peeled to its commit');
  assert.equal(annotated.subject, 'first commit');
  assert.equal(annotated.ref, 'v1.0');
  assert.equal((await cache.resolve(c1)).commit, c1);
  const abbrev = await cache.resolve(c1.slice(0, 7));
  assert.equal(abbrev.commit, c1);
  assert.equal(abbrev.ref, c1.slice(0, 7));
  assert.equal((await cache.resolve(c2.slice(0, 10).toUpperCase())).commit, c2);
  assert.equal((await cache.resolve('refs/heads/main')).commit, c2);
  assert.equal((await cache.resolve('refs/tags/v1.0')).commit, c1);
  await assert.rejects(cache.resolve('refs/tags/main'), isCode('GIT_REF_UNKNOWN'));
  await assert.rejects(cache.resolve('refs/heads/light'), isCode('GIT_REF_UNKNOWN'));
});

test('a commit pushed after a first resolve is seen by the next; the cache is fetched into, not re-cloned', { timeout: 20_000 }, async (t) => {
  const dir = await tmpdir(t);
  const { src, c2 } = await makeSource(dir);
  const w = await wrapperGit(dir);
  const cacheDir = path.join(dir, 'cache');
  const cache = new GitCache({ cacheDir, source: { repo: src, branch: 'main' }, git: w.bin });
  assert.equal((await cache.resolve()).commit, c2);
  assert.ok(w.log().includes('init'), 'the first resolve creates the cache');

  const marker = path.join(cacheDir, 'baton-test-marker');
  await writeFile(marker, 'x');
  const configIno = (await stat(path.join(cacheDir, 'config'))).ino;
  const objectsBefore = await readdir(path.join(cacheDir, 'objects'), { recursive: true });
  await w.clear();

  const c3 = await commit(src, 'lib/new.js', 'new\n', 'third commit');
  const info = await cache.resolve();
  assert.equal(info.commit, c3);
  assert.equal(info.subject, 'third commit');

  const calls = w.log();
  assert.deepEqual(calls.filter((l) => l.startsWith('fetch-start')).length, 1, calls.join(', '));
  assert.ok(!calls.includes('init') && !calls.includes('clone'), calls.join(', '));
  assert.ok(existsSync(marker), 'same cache directory');
  assert.equal((await stat(path.join(cacheDir, 'config'))).ino, configIno);
  const objectsAfter = new Set(await readdir(path.join(cacheDir, 'objects'), { recursive: true }));
  for (const o of objectsBefore) assert.ok(objectsAfter.has(o), `object ${o} from the first fetch is still there`);

  // A second GitCache on the same directory reuses it too.
  await w.clear();
  const again = new GitCache({ cacheDir, source: { repo: src, branch: 'main' }, git: w.bin });
  assert.equal((await again.resolve()).commit, c3);
  assert.ok(!w.log().includes('init'));
});

test('branches and tags deleted at the source are pruned', { timeout: 20_000 }, async (t) => {
  const dir = await tmpdir(t);
  const { src, c1 } = await makeSource(dir);
  const cache = new GitCache({ cacheDir: path.join(dir, 'cache'), source: { repo: src, branch: 'main' } });
  assert.equal((await cache.resolve('feature/x')).commit, c1);
  git(src, ['branch', '-D', 'feature/x']);
  git(src, ['tag', '-d', 'light']);
  await assert.rejects(cache.resolve('feature/x'), isCode('GIT_REF_UNKNOWN', /feature\/x/));
  await assert.rejects(cache.resolve('light'), isCode('GIT_REF_UNKNOWN', /light/));
});

test('an unknown ref is GIT_REF_UNKNOWN naming the ref, the repo and some branches', { timeout: 20_000 }, async (t) => {
  const dir = await tmpdir(t);
  const { src } = await makeSource(dir);
  const cache = new GitCache({ cacheDir: path.join(dir, 'cache'), source: { repo: src, branch: 'main' } });
  await assert.rejects(cache.resolve('no-such-branch'), isCode('GIT_REF_UNKNOWN', /"no-such-branch"/, new RegExp(src.replace(/[/.]/g, '\\$&')), /branches: .*main/, /feature\/x/));
  await assert.rejects(cache.resolve('deadbeef'), isCode('GIT_REF_UNKNOWN', /deadbeef/));
  await assert.rejects(cache.resolve('f'.repeat(40)), isCode('GIT_REF_UNKNOWN'));
  const onMissingBranch = new GitCache({ cacheDir: path.join(dir, 'cache'), source: { repo: src, branch: 'prod' } });
  await assert.rejects(onMissingBranch.resolve(), isCode('GIT_REF_UNKNOWN', /"prod"/));

  const empty = path.join(dir, 'empty');
  await mkdir(empty);
  git(empty, ['init', '-q']);
  const emptyCache = new GitCache({ cacheDir: path.join(dir, 'cache-empty'), source: { repo: empty, branch: 'main' } });
  await assert.rejects(emptyCache.resolve(), isCode('GIT_REF_UNKNOWN', /no branches/));
});

test('an unreachable remote is GIT_UNREACHABLE with the repo and git\'s stderr', { timeout: 20_000 }, async (t) => {
  const dir = await tmpdir(t);
  const missing = path.join(dir, 'does-not-exist');
  const c1 = new GitCache({ cacheDir: path.join(dir, 'c1'), source: { repo: missing, branch: 'main' } });
  await assert.rejects(c1.resolve(), isCode('GIT_UNREACHABLE', /does-not-exist/, /does not appear to be a git repository/));

  const notRepo = path.join(dir, 'plain');
  await mkdir(notRepo);
  await writeFile(path.join(notRepo, 'file'), 'x');
  const c2 = new GitCache({ cacheDir: path.join(dir, 'c2'), source: { repo: notRepo, branch: 'main' } });
  await assert.rejects(c2.resolve(), isCode('GIT_UNREACHABLE', /plain/));

  const c3 = new GitCache({ cacheDir: path.join(dir, 'c3'), source: { repo: `file://${missing}`, branch: 'main' } });
  await assert.rejects(c3.resolve(), isCode('GIT_UNREACHABLE', /does-not-exist/));
});

test('hostile refs and repository addresses are refused and run nothing', { timeout: 20_000 }, async (t) => {
  const dir = await tmpdir(t);
  const { src } = await makeSource(dir);
  const pwned = path.join(dir, 'pwned');
  const w = await wrapperGit(dir);
  const cacheDir = path.join(dir, 'cache');
  const cache = new GitCache({ cacheDir, source: { repo: src, branch: 'main' }, git: w.bin });
  for (const ref of [`--upload-pack=touch ${pwned}`, `-c core.sshCommand=touch ${pwned}`, 'main..HEAD', 'x;touch y', `main\n--upload-pack=touch ${pwned}`]) {
    await assert.rejects(cache.resolve(ref), isCode('GIT_REF_INVALID'), ref);
  }
  assert.deepEqual(w.log(), [], 'no git command ran');
  assert.ok(!existsSync(cacheDir), 'nothing was created');

  const viaRepo = new GitCache({ cacheDir, source: { repo: `--upload-pack=touch ${pwned}`, branch: 'main' }, git: w.bin });
  await assert.rejects(viaRepo.resolve(), isCode('GIT_UNREACHABLE', /starts with '-'/));
  const viaBranch = new GitCache({ cacheDir, source: { repo: src, branch: `--upload-pack=touch ${pwned}` }, git: w.bin });
  await assert.rejects(viaBranch.resolve(), isCode('GIT_REF_INVALID'));
  assert.deepEqual(w.log(), []);

  const ext = new GitCache({ cacheDir, source: { repo: `ext::sh -c touch% ${pwned}`, branch: 'main' }, git: w.bin });
  await assert.rejects(ext.resolve(), isCode('GIT_UNREACHABLE', /not allowed/));
  assert.ok(!existsSync(pwned), 'nothing was executed');
});

test('concurrent resolves on one cache never fetch at the same time, and share fetches', { timeout: 20_000 }, async (t) => {
  const dir = await tmpdir(t);
  const { src, c1, c2 } = await makeSource(dir);
  const w = await wrapperGit(dir, '0.3');
  const cache = new GitCache({ cacheDir: path.join(dir, 'cache'), source: { repo: src, branch: 'main' }, git: w.bin });
  const results = await Promise.all([cache.resolve(), cache.resolve('v1.0'), cache.resolve('feature/x'), cache.resolve(), cache.resolve('light')]);
  assert.deepEqual(results.map((r) => r.commit), [c2, c1, c1, c2, c1]);
  const fetches = w.log().filter((l) => l.startsWith('fetch-'));
  for (let i = 0; i < fetches.length; i += 2) {
    assert.match(fetches[i]!, /^fetch-start/, fetches.join(', '));
    assert.match(fetches[i + 1]!, /^fetch-end/, fetches.join(', '));
  }
  assert.equal(fetches.length, 4, `one fetch, then one shared by the four callers that came during it: ${fetches.join(', ')}`);
});

test('stale lock files from a killed git are removed; a fresh one gives a clear message', { timeout: 20_000 }, async (t) => {
  const dir = await tmpdir(t);
  const { src } = await makeSource(dir);
  const cacheDir = path.join(dir, 'cache');
  const cache = new GitCache({ cacheDir, source: { repo: src, branch: 'main' }, timeoutMs: 5_000 });
  await cache.resolve();
  const c3 = await commit(src, 'b.txt', 'b\n', 'third');

  const refLock = path.join(cacheDir, 'refs', 'remotes', 'origin', 'main.lock');
  await writeFile(refLock, '');
  await assert.rejects(cache.resolve(), isCode('GIT_FAILED', /main\.lock/, /another git process/));

  const old = new Date(Date.now() - 60_000);
  await utimes(refLock, old, old);
  for (const name of ['shallow.lock', 'index.lock', 'packed-refs.lock']) {
    await writeFile(path.join(cacheDir, name), '');
    await utimes(path.join(cacheDir, name), old, old);
  }
  assert.equal((await cache.resolve()).commit, c3);
  for (const name of ['refs/remotes/origin/main.lock', 'shallow.lock', 'index.lock', 'packed-refs.lock']) {
    assert.ok(!existsSync(path.join(cacheDir, name)), `${name} removed`);
  }
});

test('a cache directory that is something else is not touched', { timeout: 20_000 }, async (t) => {
  const dir = await tmpdir(t);
  const { src } = await makeSource(dir);
  const cacheDir = path.join(dir, 'not-a-cache');
  await mkdir(cacheDir);
  await writeFile(path.join(cacheDir, 'precious.txt'), 'keep me');
  const cache = new GitCache({ cacheDir, source: { repo: src, branch: 'main' } });
  await assert.rejects(cache.resolve(), isCode('GIT_FAILED', /not a git repository/));
  assert.deepEqual(await readdir(cacheDir), ['precious.txt']);
});

test('a fetch that hangs (ssh never answering) times out and its whole process group is stopped', { timeout: 20_000 }, async (t) => {
  const dir = await tmpdir(t);
  const pidFile = path.join(dir, 'ssh.pid');
  const fakeSsh = path.join(dir, 'fake-ssh.sh');
  await writeFile(fakeSsh, `#!/bin/sh\necho $$ > '${pidFile}'\nexec sleep 30\n`);
  await chmod(fakeSsh, 0o755);
  const saved = { cmd: process.env.GIT_SSH_COMMAND, variant: process.env.GIT_SSH_VARIANT };
  process.env.GIT_SSH_COMMAND = fakeSsh; // inherited from the daemon's environment, as the user's would be
  process.env.GIT_SSH_VARIANT = 'ssh';
  t.after(() => {
    for (const [k, v] of [['GIT_SSH_COMMAND', saved.cmd], ['GIT_SSH_VARIANT', saved.variant]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  const cache = new GitCache({ cacheDir: path.join(dir, 'cache'), source: { repo: 'ssh://git@example.invalid/app.git', branch: 'main' }, timeoutMs: 800 });
  await assert.rejects(cache.resolve(), isCode('GIT_UNREACHABLE', /timed out after 0\.8 s/, /example\.invalid/));
  assert.ok(existsSync(pidFile), 'the fake ssh ran');
  const pid = Number(readFileSync(pidFile, 'utf8'));
  const deadline = Date.now() + 3_000;
  while (Date.now() < deadline && aliveNotZombie(pid)) await new Promise((r) => setTimeout(r, 50));
  assert.ok(!aliveNotZombie(pid), `ssh (pid ${pid}) was stopped with git`);
});

function aliveNotZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}
