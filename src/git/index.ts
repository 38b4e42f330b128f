// Releases from git, for the deployer.
//
// - GitCache: a service's bare-repository cache of its source; resolve a
//   branch / tag / sha (fetching first), export a commit as a release directory.
// - exportFromGitDir / commitInfoFromGitDir: the same from a repository given
//   by its git dir and environment (a push: a pre-receive hook's quarantine).
// - gitReleaseId: the release id of a commit.
//
// Every git command runs with an argument array (never a shell), with refs
// checked first (GIT_REF_INVALID: nothing runs), in its own process group,
// stopped at its timeout, without any prompt (GIT_TERMINAL_PROMPT=0, no
// terminal), with the user's own git and ssh configuration (HOME,
// SSH_AUTH_SOCK, GIT_SSH_COMMAND… inherited), and ext::/fd:: transports off.
//
// An export is `git archive` streamed into `tar -x` (so `tar` must be on PATH):
// exactly the committed files, modes (0644 / 0755) and symlinks, no .git.
// Not supported: submodules (their directories are exported empty). The
// `export-ignore` and `export-subst` attributes apply, as for any git archive.
// Git LFS files are exported as their pointer files.

import path from 'node:path';
import { DEFAULT_GIT_TIMEOUT_MS } from './git-run.ts';
import { exportCommit, readCommitInfo } from './git-repo.ts';
import type { ExportResult, GitCommitInfo, GitRepo } from './git-repo.ts';
import { checkCommit } from './refs.ts';

export { GitCache } from './git-cache.ts';
export type { GitCacheOptions, GitSource } from './git-cache.ts';
export type { ExportResult, GitCommitInfo } from './git-repo.ts';
export { parseRef, refNameProblem, isShaLike, isFullSha } from './refs.ts';
export { DEFAULT_GIT_TIMEOUT_MS } from './git-run.ts';

export interface GitDirOptions {
  /** The repository's git directory (a bare repository, or a work tree's .git). */
  gitDir: string;
  /** Extra environment, e.g. GIT_OBJECT_DIRECTORY, GIT_ALTERNATE_OBJECT_DIRECTORIES, GIT_QUARANTINE_PATH. */
  env: Record<string, string>;
  /** A full or abbreviated sha (hex only). */
  commit: string;
  /** Per git command; default 120 s. */
  timeoutMs?: number;
  /** The git binary; default `git` on PATH. */
  git?: string;
}

function gitDirRepo(opts: GitDirOptions): GitRepo {
  const gitDir = path.resolve(opts.gitDir);
  return {
    git: opts.git ?? 'git',
    gitDir,
    env: { ...opts.env },
    timeoutMs: opts.timeoutMs ?? DEFAULT_GIT_TIMEOUT_MS,
    label: gitDir,
    // Relative object directories in a hook's environment are relative to the repository.
    cwd: gitDir,
  };
}

/** Export `commit` from the repository at gitDir into targetDir (which must not exist), atomically (.partial, then rename). */
export function exportFromGitDir(opts: GitDirOptions & { targetDir: string }): Promise<ExportResult> {
  return exportCommit(gitDirRepo(opts), opts.commit, opts.targetDir);
}

/** Commit info of `commit` in the repository at gitDir; `ref` is the commit as given. */
export async function commitInfoFromGitDir(opts: GitDirOptions): Promise<GitCommitInfo> {
  const commit = checkCommit(opts.commit);
  return readCommitInfo(gitDirRepo(opts), commit, opts.commit);
}

/** The release id of a commit: its 12-character short sha (the same commit deployed twice is the same release). */
export function gitReleaseId(info: GitCommitInfo): string {
  return info.shortCommit;
}
