// Read-side operations on one git repository (the service's cache, or a
// pushed-to repository inside a hook): commit info, and the atomic export of a
// commit's tree into a release directory.

import { lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { BatonError, errorMessage } from '../core/errors.ts';
import { checkCommit } from './refs.ts';
import { describeFailure, gitEnv, lastLines, run, supervise } from './git-run.ts';
import type { RunResult } from './git-run.ts';

export interface GitCommitInfo {
  /** Full sha. */
  commit: string;
  /** First 12 characters of the sha. */
  shortCommit: string;
  /** "Name <email>" */
  author: string;
  /** Author date, epoch ms. */
  authoredAt: number;
  subject: string;
  /** What was asked: a branch, a tag or a sha. */
  ref: string;
}

export interface ExportResult {
  /** Regular files and symlinks written. */
  files: number;
  /** Total size of the regular files. */
  bytes: number;
  durationMs: number;
}

/** How to run git against one repository. */
export interface GitRepo {
  /** The git binary. */
  git: string;
  /** The git directory (bare repository or .git). */
  gitDir: string;
  /** Extra environment (e.g. a quarantine's GIT_OBJECT_DIRECTORY). */
  env: Record<string, string>;
  timeoutMs: number;
  /** What the repository is called in messages. */
  label: string;
  /** Working directory of the commands (default: the daemon's). */
  cwd?: string;
}

/** Options every command gets: no dangerous transports, no pager, no signature output. */
export const SAFE_CONFIG = [
  '-c', 'protocol.ext.allow=never',
  '-c', 'protocol.fd.allow=never',
  '-c', 'core.pager=cat',
  '-c', 'log.showSignature=false',
  '-c', 'core.fsmonitor=false',
];

export function gitArgs(repo: GitRepo, args: string[]): string[] {
  return [...SAFE_CONFIG, `--git-dir=${repo.gitDir}`, ...args];
}

export function runGit(repo: GitRepo, args: string[], timeoutMs = repo.timeoutMs): Promise<RunResult> {
  return run(repo.git, gitArgs(repo, args), { env: gitEnv(repo.env), timeoutMs, cwd: repo.cwd });
}

export function gitFailed(repo: GitRepo, what: string, r: RunResult, timeoutMs = repo.timeoutMs): BatonError {
  if (r.spawnError) return new BatonError('GIT_FAILED', `git could not be started (${repo.git}): ${r.spawnError.message}`);
  return new BatonError('GIT_FAILED', `git ${what} in ${repo.label} failed: ${describeFailure(r, timeoutMs)}`);
}

/** The full sha of `sha` (hex, possibly abbreviated) if it names a commit here, else null. */
export async function revParseCommit(repo: GitRepo, sha: string): Promise<string | null> {
  const r = await runGit(repo, ['rev-parse', '--verify', '--quiet', `${sha}^{commit}`]);
  if (r.code === 0) {
    const out = r.stdout.trim();
    return /^[0-9a-f]{40,64}$/.test(out) ? out : null;
  }
  if (r.timedOut || r.spawnError || r.signal) throw gitFailed(repo, 'rev-parse', r);
  if (/ambiguous/i.test(r.stderr)) {
    throw new BatonError('GIT_REF_UNKNOWN', `commit ${sha} is ambiguous in ${repo.label}: give more digits`, [lastLines(r.stderr)]);
  }
  return null;
}

const FORMAT = '%H%x00%an%x00%ae%x00%at%x00%s';

/** Commit info for a hex sha (full or abbreviated); `ref` is recorded as what was asked. */
export async function readCommitInfo(repo: GitRepo, sha: string, ref: string): Promise<GitCommitInfo> {
  const r = await runGit(repo, ['log', '-1', '--no-walk', '--no-show-signature', '--encoding=UTF-8', `--format=${FORMAT}`, `${sha}^{commit}`, '--']);
  if (r.code !== 0) {
    if (!r.timedOut && !r.spawnError && /unknown revision|bad revision|bad object|not a valid|ambiguous argument|short object ID/i.test(r.stderr)) {
      throw new BatonError('GIT_REF_UNKNOWN', `commit ${sha} not found in ${repo.label}`, [lastLines(r.stderr)]);
    }
    throw gitFailed(repo, 'log', r);
  }
  const fields = r.stdout.replace(/\n$/, '').split('\0');
  const [commit, name, email, at, subject] = fields;
  if (fields.length < 5 || !commit || !/^[0-9a-f]{40,64}$/.test(commit)) {
    throw new BatonError('GIT_FAILED', `git log in ${repo.label} gave unexpected output for ${sha}`);
  }
  return {
    commit,
    shortCommit: commit.slice(0, 12),
    author: `${name ?? ''} <${email ?? ''}>`,
    authoredAt: Number(at) * 1000,
    subject: subject ?? '',
    ref,
  };
}

/** Export targets being written in this process: a second export to the same place waits, then finds it taken. */
const exporting = new Map<string, Promise<unknown>>();

/**
 * `git archive <commit>` streamed into `tar -x` in `${targetDir}.partial`, then
 * renamed to targetDir. targetDir must not exist. On any failure the .partial is
 * removed and targetDir is never created. Submodules are not included (git
 * archive writes their directories empty); `export-ignore` / `export-subst`
 * attributes apply as in any git archive.
 */
export async function exportCommit(repo: GitRepo, commitIn: string, targetDirIn: string): Promise<ExportResult> {
  const commit = checkCommit(commitIn);
  const targetDir = path.resolve(targetDirIn);
  const previous = exporting.get(targetDir) ?? Promise.resolve();
  const mine = previous.catch(() => {}).then(() => exportNow(repo, commit, targetDir));
  exporting.set(targetDir, mine);
  try {
    return await mine;
  } finally {
    if (exporting.get(targetDir) === mine) exporting.delete(targetDir);
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

function targetTaken(commit: string, targetDir: string): BatonError {
  return new BatonError('RELEASE_INVALID', `cannot export ${commit} to ${targetDir}: it already exists`);
}

async function exportNow(repo: GitRepo, commit: string, targetDir: string): Promise<ExportResult> {
  const started = Date.now();
  if (await exists(targetDir)) throw targetTaken(commit, targetDir);
  const full = await revParseCommit(repo, commit);
  if (!full) throw new BatonError('GIT_REF_UNKNOWN', `commit ${commit} not found in ${repo.label}`);

  const partial = `${targetDir}.partial`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  try {
    await archiveInto(repo, full, partial);
    const { files, bytes } = await countTree(partial);
    if (await exists(targetDir)) throw targetTaken(commit, targetDir);
    await rename(partial, targetDir);
    return { files, bytes, durationMs: Date.now() - started };
  } catch (err) {
    await rm(partial, { recursive: true, force: true }).catch(() => {});
    if (err instanceof BatonError) throw err;
    throw new BatonError('GIT_FAILED', `exporting ${commit} from ${repo.label} to ${targetDir} failed: ${errorMessage(err)}`);
  }
}

async function archiveInto(repo: GitRepo, full: string, dir: string): Promise<void> {
  const short = full.slice(0, 12);
  // tar.umask: modes in the archive are 0644 / 0755 (git's default 0002 would make files group-writable).
  const git = supervise(repo.git, gitArgs(repo, ['-c', 'tar.umask=0022', 'archive', '--format=tar', full]), {
    env: gitEnv(repo.env),
    cwd: repo.cwd,
    timeoutMs: repo.timeoutMs,
    stdout: 'pipe',
  });
  const tar = supervise('tar', ['-x', '-f', '-', '-C', dir, '--no-same-owner'], {
    env: { ...process.env },
    timeoutMs: repo.timeoutMs,
    stdin: 'pipe',
    stdout: 'ignore',
  });
  // tar may exit (successfully) as soon as it reads the end-of-archive blocks,
  // before git has written the padding after them: a plain pipeline would then
  // fail with EPIPE and take git down with it, depending on timing. So git's
  // output is always read to its end, and handed to tar while tar reads.
  let pipeError: Error | null = null;
  const out = git.child.stdout!;
  const into = tar.child.stdin!;
  let tarGone = false;
  into.on('error', (err: NodeJS.ErrnoException) => {
    tarGone = true;
    if (err.code !== 'EPIPE') pipeError = err;
    out.resume();
  });
  into.on('drain', () => out.resume());
  out.on('data', (chunk: Buffer) => {
    if (!tarGone && !into.write(chunk)) out.pause();
  });
  const piping = new Promise<void>((resolve) => {
    out.once('end', () => {
      if (!tarGone) into.end();
      resolve();
    });
    out.once('error', (err) => {
      pipeError = err;
      tar.kill();
      resolve();
    });
    out.once('close', () => resolve());
  });
  const [g, t] = await Promise.all([git.done, tar.done, piping]);
  const gitOk = g.code === 0 && !g.timedOut;
  const tarOk = t.code === 0 && !t.timedOut;
  if (gitOk && tarOk) return;
  if (g.timedOut || t.timedOut) {
    throw new BatonError('GIT_FAILED', `exporting ${short} from ${repo.label} timed out after ${Math.round(repo.timeoutMs / 100) / 10} s`);
  }
  // git exiting on its own with an error is the cause (e.g. a bad object); git
  // killed (SIGPIPE, or by us) after tar stopped means tar is (e.g. a full disk).
  const gitOwnFailure = !gitOk && g.code !== null && g.code !== 0;
  if (tarOk || gitOwnFailure || g.spawnError) {
    const why = g.spawnError
      ? `git could not be started: ${g.spawnError.message}`
      : `git archive: ${lastLines(git.stderrTail()) || `exit code ${g.code ?? g.signal}`}${pipeError ? ` (${errorMessage(pipeError)})` : ''}`;
    throw new BatonError('GIT_FAILED', `exporting ${short} from ${repo.label} failed: ${why}`);
  }
  const why = t.spawnError ? `tar could not be started: ${t.spawnError.message}` : `tar: ${lastLines(tar.stderrTail()) || `exit code ${t.code ?? t.signal}`}`;
  throw new BatonError('GIT_FAILED', `exporting ${short} from ${repo.label} failed: ${why}`);
}

/** Regular files and symlinks under dir, and the regular files' total size. */
async function countTree(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  for (const e of entries) {
    if (e.isSymbolicLink()) files++;
    else if (e.isFile()) {
      files++;
      bytes += (await lstat(path.join(e.parentPath, e.name))).size;
    }
  }
  return { files, bytes };
}
