// Checking what users give us before it reaches a git command line: refs
// (branch, tag, sha) and repository addresses. Pure, no git invocation.

import { BatonError } from '../core/errors.ts';

const SHA_RE = /^[0-9a-fA-F]{4,64}$/;
const FULL_SHA_RE = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** A full or abbreviated object name (4 to 40 hex digits; 64 for SHA-256 repositories). */
export function isShaLike(s: string): boolean {
  return SHA_RE.test(s);
}

export function isFullSha(s: string): boolean {
  return FULL_SHA_RE.test(s);
}

/**
 * Why `name` is not a valid branch or tag name, or null if it is. The rules of
 * `git check-ref-format --allow-onelevel`, plus: no leading '-' (it would read as
 * an option), at most 255 bytes.
 */
export function refNameProblem(name: string): string | null {
  if (name.length === 0) return 'is empty';
  if (Buffer.byteLength(name) > 255) return 'is longer than 255 bytes';
  if (name.startsWith('-')) return "starts with '-'";
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x20\x7f]/.test(name)) return 'contains a space or a control character';
  const bad = /[~^:?*[\\]/.exec(name);
  if (bad) return `contains '${bad[0]}'`;
  if (name.includes('..')) return "contains '..'";
  if (name.includes('@{')) return "contains '@{'";
  if (name === '@') return "is '@'";
  if (name.startsWith('/') || name.endsWith('/')) return "starts or ends with '/'";
  if (name.includes('//')) return "contains '//'";
  if (name.endsWith('.')) return "ends with '.'";
  for (const part of name.split('/')) {
    if (part.startsWith('.')) return "has a component starting with '.'";
    if (part.endsWith('.lock')) return "has a component ending with '.lock'";
  }
  return null;
}

/** What a ref asks for, once checked. */
export type RefQuery =
  | { kind: 'sha'; sha: string; full: boolean; alsoName: boolean }
  | { kind: 'name'; name: string; only: 'branch' | 'tag' | null };

/**
 * Check a ref given by a user (a branch or tag name, `refs/heads/X`,
 * `refs/tags/X`, a full or abbreviated sha) and say how to look it up. Throws
 * GIT_REF_INVALID for anything else, before any git command runs.
 */
export function parseRef(ref: string): RefQuery {
  if (typeof ref !== 'string') throw new BatonError('GIT_REF_INVALID', 'git ref must be a string');
  const shown = JSON.stringify(ref.length > 80 ? `${ref.slice(0, 80)}…` : ref);
  if (isShaLike(ref) && !ref.startsWith('-')) {
    const sha = ref.toLowerCase();
    // A hex string may also be a branch or tag name ("cafe", "deadbeef").
    return { kind: 'sha', sha, full: isFullSha(sha), alsoName: refNameProblem(ref) === null };
  }
  let only: 'branch' | 'tag' | null = null;
  let name = ref;
  if (ref.startsWith('refs/heads/')) {
    only = 'branch';
    name = ref.slice('refs/heads/'.length);
  } else if (ref.startsWith('refs/tags/')) {
    only = 'tag';
    name = ref.slice('refs/tags/'.length);
  }
  const problem = refNameProblem(name);
  if (problem) throw new BatonError('GIT_REF_INVALID', `git ref ${shown} is not a valid branch, tag or commit: it ${problem}`);
  return { kind: 'name', name, only };
}

/**
 * Check a repository address (a local path or any URL git understands). Refuses
 * what could be read as an option or break a command line; the dangerous
 * transports (ext::, fd::) are also disabled on every fetch.
 */
export function checkRepo(repo: string): void {
  if (typeof repo !== 'string' || repo.length === 0) throw new BatonError('GIT_UNREACHABLE', 'git repository address is empty');
  const shown = JSON.stringify(repo.length > 120 ? `${repo.slice(0, 120)}…` : repo);
  if (repo.startsWith('-')) throw new BatonError('GIT_UNREACHABLE', `git repository address ${shown} starts with '-'`);
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(repo)) throw new BatonError('GIT_UNREACHABLE', `git repository address ${shown} contains a control character`);
}

/** Check a commit given to an export: hex only, so it can never be read as an option or a revision expression. */
export function checkCommit(commit: string): string {
  if (typeof commit !== 'string' || !isShaLike(commit)) {
    const shown = JSON.stringify(String(commit).slice(0, 80));
    throw new BatonError('GIT_REF_INVALID', `commit ${shown} is not a commit id (4 to 40 hex digits)`);
  }
  return commit.toLowerCase();
}
