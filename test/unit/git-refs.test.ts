import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRef, refNameProblem, isShaLike, isFullSha, gitReleaseId } from '../../src/git/index.ts';
import { checkCommit, checkRepo } from '../../src/git/refs.ts';

const code = (c: string) => (e: unknown) => {
  assert.equal((e as { code?: string }).code, c);
  return true;
};

test('valid branch and tag names', () => {
  for (const name of ['main', 'release/2024-01', 'v1.2.3', 'feature/x_y+z', 'a', 'UPPER', 'deploy@prod']) {
    assert.equal(refNameProblem(name), null, name);
    assert.deepEqual(parseRef(name), { kind: 'name', name, only: null });
  }
  assert.deepEqual(parseRef('refs/heads/main'), { kind: 'name', name: 'main', only: 'branch' });
  assert.deepEqual(parseRef('refs/tags/v1'), { kind: 'name', name: 'v1', only: 'tag' });
});

test('hostile or malformed refs are refused with GIT_REF_INVALID', () => {
  const bad = [
    '',
    '--upload-pack=touch /tmp/x',
    '-x',
    'a..b',
    '../etc',
    'a b',
    'tab\tx',
    'nl\nx',
    'nul\0x',
    'del\x7f',
    'HEAD@{1}',
    '@',
    'main~1',
    'main^',
    'a:b',
    'a?',
    'a*',
    'a[b',
    'a\\b',
    '/main',
    'main/',
    'a//b',
    'main.',
    '.hidden',
    'x/.y',
    'main.lock',
    'x/y.lock/z',
    'refs/heads/-x',
    'refs/tags/a..b',
    'x'.repeat(256),
  ];
  for (const ref of bad) assert.throws(() => parseRef(ref), code('GIT_REF_INVALID'), JSON.stringify(ref));
  assert.throws(() => parseRef('--upload-pack=touch /tmp/x'), /starts with '-'/);
  assert.throws(() => parseRef('a..b'), /contains '\.\.'/);
});

test('shas: full, abbreviated, case-insensitive; hex strings may also be names', () => {
  const full = '0123456789abcdef0123456789abcdef01234567';
  assert.deepEqual(parseRef(full), { kind: 'sha', sha: full, full: true, alsoName: true });
  assert.deepEqual(parseRef('ABCDEF1'), { kind: 'sha', sha: 'abcdef1', full: false, alsoName: true });
  assert.deepEqual(parseRef('cafe'), { kind: 'sha', sha: 'cafe', full: false, alsoName: true });
  assert.equal(parseRef('abc').kind, 'name'); // 3 digits: too short for a sha
  assert.ok(isShaLike('abcd') && !isShaLike('abc') && !isShaLike('xyz1') && !isShaLike('-abcd'));
  assert.ok(isFullSha(full) && !isFullSha(full.slice(1)));
  assert.equal(checkCommit('ABCD'), 'abcd');
  for (const c of ['--output=/tmp/x', 'HEAD', 'main', 'abc', 'abcd^{tree}', 'abcd..ef12', '']) {
    assert.throws(() => checkCommit(c), code('GIT_REF_INVALID'), c);
  }
});

test('repository addresses that could be options or break a command line are refused', () => {
  for (const ok of ['/srv/app.git', 'git@github.com:me/app.git', 'ssh://git@host:2222/app.git', 'https://example.com/a.git', 'file:///x/y', '../rel']) {
    checkRepo(ok);
  }
  for (const bad of ['', '--upload-pack=touch /tmp/x', '-oProxyCommand=x', 'a\nb', 'a\0b']) {
    assert.throws(() => checkRepo(bad), code('GIT_UNREACHABLE'), JSON.stringify(bad));
  }
});

test('the release id of a commit is its short sha', () => {
  const info = { commit: 'a'.repeat(40), shortCommit: 'a'.repeat(12), author: 'A <a@x>', authoredAt: 0, subject: 's', ref: 'main' };
  assert.equal(gitReleaseId(info), 'aaaaaaaaaaaa');
});
