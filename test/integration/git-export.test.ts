// Exports of a commit into a release directory: GitCache.export, and
// exportFromGitDir / commitInfoFromGitDir on a bare repository and inside a
// real pre-receive hook (quarantine environment).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GitCache, commitInfoFromGitDir, exportFromGitDir } from '../../src/git/index.ts';
import type { BatonError } from '../../src/core/errors.ts';
import { REAL_GIT, git } from '../helpers/git-isolated.ts';

const RELEASE_INDEX = fileURLToPath(new URL('../../src/git/index.ts', import.meta.url));

async function tmpdir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'baton-gitexport-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function isCode(code: string, ...patterns: RegExp[]) {
  return (err: unknown) => {
    const e = err as BatonError;
    assert.equal(e.code, code, e.message);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  };
}

const FILES: Record<string, string> = {
  'app.js': 'console.log("v1")\n',
  'bin/run.sh': '#!/bin/sh\necho run\n',
  'lib/deep/x.txt': 'deep\n',
  'empty': '',
  'name with space é.txt': 'unicode\n',
  '.gitignore': 'secret.env\n',
};

/** A work tree with a committed tree (modes, symlinks) plus untracked, ignored and modified files. */
async function makeSource(dir: string): Promise<{ src: string; commit: string }> {
  const src = path.join(dir, 'src');
  await mkdir(src);
  git(src, ['init', '-q']);
  for (const [f, content] of Object.entries(FILES)) {
    await mkdir(path.dirname(path.join(src, f)), { recursive: true });
    await writeFile(path.join(src, f), content);
  }
  await chmod(path.join(src, 'bin/run.sh'), 0o755);
  await symlink('app.js', path.join(src, 'link'));
  await symlink('lib/deep', path.join(src, 'dirlink'));
  git(src, ['add', '-A']);
  git(src, ['commit', '-q', '-m', 'the release']);
  // Not committed: must not be exported.
  await writeFile(path.join(src, 'untracked.txt'), 'untracked');
  await writeFile(path.join(src, 'secret.env'), 'PASSWORD=x');
  await writeFile(path.join(src, 'app.js'), 'console.log("modified, not committed")\n');
  return { src, commit: git(src, ['rev-parse', 'HEAD']) };
}

async function listTree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

async function checkExported(target: string): Promise<void> {
  assert.deepEqual(await listTree(target), [...Object.keys(FILES), 'dirlink', 'link'].sort());
  assert.ok(!existsSync(path.join(target, '.git')));
  for (const [f, content] of Object.entries(FILES)) assert.equal(await readFile(path.join(target, f), 'utf8'), content, f);
  assert.equal((await lstat(path.join(target, 'bin/run.sh'))).mode & 0o777, 0o755, 'the script stays executable');
  assert.equal((await lstat(path.join(target, 'app.js'))).mode & 0o777, 0o644);
  assert.ok((await lstat(path.join(target, 'link'))).isSymbolicLink());
  assert.equal(await readlink(path.join(target, 'link')), 'app.js');
  assert.equal(await readlink(path.join(target, 'dirlink')), 'lib/deep');
  assert.equal(await readFile(path.join(target, 'dirlink', 'x.txt'), 'utf8'), 'deep\n');
}

const EXPECTED_FILES = Object.keys(FILES).length + 2;
const EXPECTED_BYTES = Object.values(FILES).reduce((n, c) => n + Buffer.byteLength(c), 0);

test('export writes exactly the committed files, with modes and symlinks, and no .git', { timeout: 20_000 }, async (t) => {
  const dir = await tmpdir(t);
  const { src, commit } = await makeSource(dir);
  const cache = new GitCache({ cacheDir: path.join(dir, 'cache'), source: { repo: src, branch: 'main' } });
  const info = await cache.resolve();
  assert.equal(info.commit, commit);
  const target = path.join(dir, 'releases', 'web', info.shortCommit);
  const r = await cache.export(info.commit, target);
  assert.equal(r.files, EXPECTED_FILES);
  assert.equal(r.bytes, EXPECTED_BYTES);
  assert.ok(Number.isFinite(r.durationMs) && r.durationMs >= 0);
  await checkExported(target);
  assert.ok(!existsSync(`${target}.partial`));

  // An abbreviated sha works too; a stale .partial from a killed export is replaced.
  const target2 = path.join(dir, 'releases', 'web', 'again');
  await mkdir(`${target2}.partial/junk`, { recursive: true });
  await cache.export(commit.slice(0, 8), target2);
  await checkExported(target2);
  assert.ok(!existsSync(`${target2}.partial`));
});

test('export into an existing directory is refused and leaves it alone', { timeout: 20_000 }, async (t) => {
  const dir = await tmpdir(t);
  const { src, commit } = await makeSource(dir);
  const cache = new GitCache({ cacheDir: path.join(dir, 'cache'), source: { repo: src, branch: 'main' } });
  await cache.resolve();
  const target = path.join(dir, 'taken');
  await mkdir(target);
  await writeFile(path.join(target, 'mine.txt'), 'mine');
  await assert.rejects(cache.export(commit, target), isCode('RELEASE_INVALID', /already exists/));
  assert.deepEqual(await readdir(target), ['mine.txt']);
  assert.ok(!existsSync(`${target}.partial`));

  // Two exports racing for the same directory: one wins, the other is refused.
  const raced = path.join(dir, 'raced');
  const results = await Promise.allSettled([cache.export(commit, raced), cache.export(commit, raced)]);
  assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
  await checkExported(raced);
});

test('a failing export leaves neither the target nor a .partial', { timeout: 20_000 }, async (t) => {
  const dir = await tmpdir(t);
  const { src, commit } = await makeSource(dir);
  const cacheDir = path.join(dir, 'cache');
  const cache = new GitCache({ cacheDir, source: { repo: src, branch: 'main' } });
  await cache.resolve();
  const target = path.join(dir, 'releases', 'r1');
  const gone = () => {
    assert.ok(!existsSync(target), 'no target');
    assert.ok(!existsSync(`${target}.partial`), 'no .partial');
  };

  await assert.rejects(cache.export('0123456789abcdef0123456789abcdef01234567', target), isCode('GIT_REF_UNKNOWN', /0123456789ab/));
  gone();
  const pwned = path.join(dir, 'pwned');
  await assert.rejects(cache.export(`--output=${pwned}`, target), isCode('GIT_REF_INVALID'));
  await assert.rejects(cache.export('main', target), isCode('GIT_REF_INVALID'));
  assert.ok(!existsSync(pwned));
  gone();

  // git archive dies half-way through its output.
  const dying = path.join(dir, 'git-dying.sh');
  await writeFile(dying, `#!/bin/sh\nfor a in "$@"; do [ "$a" = archive ] && { '${REAL_GIT}' "$@" | head -c 1536; echo 'fatal: simulated failure' >&2; exit 1; }; done\nexec '${REAL_GIT}' "$@"\n`);
  await chmod(dying, 0o755);
  await assert.rejects(
    exportFromGitDir({ gitDir: cacheDir, env: {}, commit, targetDir: target, git: dying }),
    isCode('GIT_FAILED', /simulated failure/),
  );
  gone();

  // git archive hangs after some output: the timeout stops it.
  const hanging = path.join(dir, 'git-hanging.sh');
  await writeFile(hanging, `#!/bin/sh\nfor a in "$@"; do [ "$a" = archive ] && { '${REAL_GIT}' "$@" | head -c 1536; exec sleep 30; }; done\nexec '${REAL_GIT}' "$@"\n`);
  await chmod(hanging, 0o755);
  await assert.rejects(
    exportFromGitDir({ gitDir: cacheDir, env: {}, commit, targetDir: target, git: hanging, timeoutMs: 700 }),
    isCode('GIT_FAILED', /timed out after 0\.7 s/),
  );
  gone();
  assert.deepEqual(await readdir(path.join(dir, 'releases')), []);
});

test('exportFromGitDir and commitInfoFromGitDir on a bare repository', { timeout: 20_000 }, async (t) => {
  const dir = await tmpdir(t);
  const { src, commit } = await makeSource(dir);
  const bare = path.join(dir, 'pushed.git');
  git(dir, ['init', '-q', '--bare', bare]);
  git(src, ['push', '-q', bare, 'main']);

  const info = await commitInfoFromGitDir({ gitDir: bare, env: {}, commit: commit.slice(0, 9) });
  assert.equal(info.commit, commit);
  assert.equal(info.shortCommit, commit.slice(0, 12));
  assert.equal(info.author, 'Ada Lovelace <ada@example.com>');
  assert.equal(info.subject, 'the release');
  assert.equal(info.ref, commit.slice(0, 9));
  assert.ok(Math.abs(info.authoredAt - Date.now()) < 600_000);

  const target = path.join(dir, 'out');
  const r = await exportFromGitDir({ gitDir: bare, env: {}, commit, targetDir: target });
  assert.equal(r.files, EXPECTED_FILES);
  await checkExported(target);

  await assert.rejects(commitInfoFromGitDir({ gitDir: bare, env: {}, commit: 'f'.repeat(40) }), isCode('GIT_REF_UNKNOWN'));
  await assert.rejects(commitInfoFromGitDir({ gitDir: bare, env: {}, commit: '--all' }), isCode('GIT_REF_INVALID'));
});

test('inside a pre-receive hook: export and commit info from the quarantine', { timeout: 20_000 }, async (t) => {
  const dir = await tmpdir(t);
  const { src, commit } = await makeSource(dir);
  const bare = path.join(dir, 'pushed.git');
  git(dir, ['init', '-q', '--bare', bare]);
  const target = path.join(dir, 'from-hook');
  const resultFile = path.join(dir, 'hook-result.json');
  const script = path.join(dir, 'hook.ts');
  await writeFile(
    script,
    `import { writeFileSync } from 'node:fs';
import { commitInfoFromGitDir, exportFromGitDir } from ${JSON.stringify(RELEASE_INDEX)};
const [, , gitDir, newSha] = process.argv;
const env = {};
for (const k of ['GIT_OBJECT_DIRECTORY', 'GIT_ALTERNATE_OBJECT_DIRECTORIES', 'GIT_QUARANTINE_PATH']) if (process.env[k]) env[k] = process.env[k];
try {
  const info = await commitInfoFromGitDir({ gitDir, env, commit: newSha });
  const exported = await exportFromGitDir({ gitDir, env, commit: newSha, targetDir: ${JSON.stringify(target)} });
  // Without the quarantine's environment the pushed objects are not visible yet.
  let withoutEnv = 'found';
  try { await commitInfoFromGitDir({ gitDir, env: {}, commit: newSha }); } catch (e) { withoutEnv = e.code; }
  writeFileSync(${JSON.stringify(resultFile)}, JSON.stringify({ info, exported, withoutEnv, quarantine: !!env.GIT_QUARANTINE_PATH }));
} catch (e) {
  writeFileSync(${JSON.stringify(resultFile)}, JSON.stringify({ error: String(e && e.message) }));
}
process.exit(1); // reject the push: the objects never leave the quarantine
`,
  );
  const hook = path.join(bare, 'hooks', 'pre-receive');
  await writeFile(hook, `#!/bin/sh\nread old new ref\nexec '${process.execPath}' '${script}' "$(pwd)" "$new"\n`);
  await chmod(hook, 0o755);

  assert.throws(() => git(src, ['push', '-q', bare, 'main']), /pre-receive hook declined/);
  const result = JSON.parse(readFileSync(resultFile, 'utf8'));
  assert.equal(result.error, undefined, result.error);
  assert.equal(result.quarantine, true);
  assert.equal(result.info.commit, commit);
  assert.equal(result.info.subject, 'the release');
  assert.equal(result.exported.files, EXPECTED_FILES);
  assert.equal(result.withoutEnv, 'GIT_REF_UNKNOWN');
  await checkExported(target);
  // The push was refused: the repository never got the commit.
  await assert.rejects(commitInfoFromGitDir({ gitDir: bare, env: {}, commit }), isCode('GIT_REF_UNKNOWN'));
});
