// The per-service object cache: a bare repository that mirrors the source's
// branches (as refs/remotes/origin/*) and tags, fetched before each resolve, so
// a deploy downloads only what is new and an export never touches the network.

import { lstat, mkdir, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { BatonError } from '../core/errors.ts';
import { DEFAULT_GIT_TIMEOUT_MS, describeFailure, lastLines } from './git-run.ts';
import type { RunResult } from './git-run.ts';
import { exportCommit, readCommitInfo, revParseCommit, runGit } from './git-repo.ts';
import type { ExportResult, GitCommitInfo, GitRepo } from './git-repo.ts';
import { checkRepo, parseRef } from './refs.ts';
import type { RefQuery } from './refs.ts';

export interface GitSource {
  /** A local path or any URL git understands (ssh included). */
  repo: string;
  /** The branch deployed by default. */
  branch: string;
}

export interface GitCacheOptions {
  /** The bare repository, created on first use. One per service. */
  cacheDir: string;
  source: GitSource;
  /** Per git command; default 120 s. */
  timeoutMs?: number;
  /** The git binary; default `git` on PATH. */
  git?: string;
}

const BRANCHES_NS = 'refs/remotes/origin/';
const FETCH_REFSPECS = [`+refs/heads/*:${BRANCHES_NS}*`, '+refs/tags/*:refs/tags/*'];
/** How many branch names an "unknown ref" message lists. */
const BRANCHES_SHOWN = 8;

/** Fetches of one cache directory in this process, one at a time (several GitCache objects may share a directory). */
const dirLocks = new Map<string, Promise<unknown>>();

function withDirLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const previous = dirLocks.get(dir) ?? Promise.resolve();
  const mine = previous.catch(() => {}).then(fn);
  dirLocks.set(dir, mine);
  return mine.finally(() => {
    if (dirLocks.get(dir) === mine) dirLocks.delete(dir);
  });
}

export class GitCache {
  readonly cacheDir: string;
  readonly source: GitSource;
  readonly timeoutMs: number;
  #repo: GitRepo;
  #inFlight: Promise<void> | null = null;
  #queued: Promise<void> | null = null;

  constructor(opts: GitCacheOptions) {
    this.cacheDir = path.resolve(opts.cacheDir);
    this.source = { repo: opts.source.repo, branch: opts.source.branch };
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_GIT_TIMEOUT_MS;
    this.#repo = {
      git: opts.git ?? 'git',
      gitDir: this.cacheDir,
      env: {},
      timeoutMs: this.timeoutMs,
      label: `the cache of ${opts.source.repo}`,
    };
  }

  /**
   * Fetch (all branches and tags, pruned), then resolve `ref` (default: the
   * source's branch): a branch, a tag (annotated tags peeled), `refs/heads/X`,
   * `refs/tags/X`, a full or abbreviated sha. A full sha that no branch or tag
   * reaches is fetched by itself if the server allows it.
   */
  async resolve(ref: string = this.source.branch): Promise<GitCommitInfo> {
    const query = parseRef(ref); // GIT_REF_INVALID before anything runs
    checkRepo(this.source.repo);
    await this.#fetch();
    let sha = await this.#lookup(query, ref);
    if (!sha && query.kind === 'sha' && query.full) {
      await this.#fetchCommit(query.sha);
      sha = await revParseCommit(this.#repo, query.sha);
    }
    if (!sha) throw await this.#unknown(ref);
    return readCommitInfo(this.#repo, sha, ref);
  }

  /** Export a commit already in the cache (see resolve) into targetDir, atomically. */
  export(commit: string, targetDir: string): Promise<ExportResult> {
    return exportCommit(this.#repo, commit, targetDir);
  }

  async #lookup(q: RefQuery, ref: string): Promise<string | null> {
    if (q.kind === 'sha' && q.full) {
      const sha = await revParseCommit(this.#repo, q.sha);
      if (sha) return sha;
    }
    if (q.kind === 'name' || q.alsoName) {
      const name = q.kind === 'name' ? q.name : ref;
      const only = q.kind === 'name' ? q.only : null;
      if (only !== 'tag') {
        const sha = await this.#revParseRef(`${BRANCHES_NS}${name}`);
        if (sha) return sha;
      }
      if (only !== 'branch') {
        const sha = await this.#revParseRef(`refs/tags/${name}`);
        if (sha) return sha;
      }
    }
    if (q.kind === 'sha' && !q.full) return revParseCommit(this.#repo, q.sha);
    return null;
  }

  /** A full ref name (validated) to the commit it points at (tags peeled), or null. */
  async #revParseRef(fullRef: string): Promise<string | null> {
    const r = await runGit(this.#repo, ['rev-parse', '--verify', '--quiet', `${fullRef}^{commit}`]);
    if (r.code === 0 && /^[0-9a-f]{40,64}$/.test(r.stdout.trim())) return r.stdout.trim();
    if (r.timedOut || r.spawnError || r.signal) {
      throw new BatonError('GIT_FAILED', `git rev-parse in ${this.#repo.label} failed: ${describeFailure(r, this.timeoutMs)}`);
    }
    return null;
  }

  async #unknown(ref: string): Promise<BatonError> {
    const r = await runGit(this.#repo, ['for-each-ref', '--sort=-committerdate', '--format=%(refname)', BRANCHES_NS]);
    const branches = r.code === 0 ? r.stdout.split('\n').filter(Boolean).map((n) => n.slice(BRANCHES_NS.length)) : [];
    let available: string;
    if (branches.length === 0) available = 'it has no branches';
    else {
      const shown = branches.slice(0, BRANCHES_SHOWN).join(', ');
      const more = branches.length > BRANCHES_SHOWN ? ` (and ${branches.length - BRANCHES_SHOWN} more)` : '';
      available = `branches: ${shown}${more}`;
    }
    return new BatonError('GIT_REF_UNKNOWN', `git ref ${JSON.stringify(ref)} is not a branch, tag or commit of ${this.source.repo}; ${available}`);
  }

  /**
   * One fetch at a time per instance (and per directory in this process). A
   * call that arrives while a fetch runs waits for the next one, which starts
   * after it (so it sees everything pushed before the call); calls that arrive
   * meanwhile share that next fetch.
   */
  #fetch(): Promise<void> {
    if (this.#queued) return this.#queued;
    if (this.#inFlight) {
      const queued = this.#inFlight
        .catch(() => {})
        .then(() => {
          this.#queued = null;
          return this.#startFetch();
        });
      this.#queued = queued;
      return queued;
    }
    return this.#startFetch();
  }

  #startFetch(): Promise<void> {
    const p: Promise<void> = withDirLock(this.cacheDir, () => this.#fetchNow()).finally(() => {
      if (this.#inFlight === p) this.#inFlight = null;
    });
    this.#inFlight = p;
    return p;
  }

  async #fetchNow(): Promise<void> {
    await this.#ensureRepo();
    await this.#removeStaleLocks(this.timeoutMs);
    const r = await runGit(this.#repo, ['fetch', '--quiet', '--prune', '--no-tags', '--no-write-fetch-head', '--', this.source.repo, ...FETCH_REFSPECS]);
    if (r.code === 0) return;
    if (r.timedOut) {
      // Our git is gone (its whole group was stopped): any lock left is ours.
      await this.#removeStaleLocks(0);
      throw new BatonError('GIT_UNREACHABLE', `fetching from ${this.source.repo} timed out after ${Math.round(this.timeoutMs / 100) / 10} s`, lastLines(r.stderr).split('\n').filter(Boolean));
    }
    const lock = lockProblem(r);
    if (lock) {
      throw new BatonError(
        'GIT_FAILED',
        `fetching into ${this.cacheDir} failed: ${lock} is locked; another git process may be using the cache (if none is, remove ${lock})`,
        [lastLines(r.stderr)],
      );
    }
    if (r.spawnError) throw new BatonError('GIT_FAILED', `git could not be started: ${r.spawnError.message}`);
    throw new BatonError('GIT_UNREACHABLE', `cannot fetch from ${this.source.repo}: ${describeFailure(r, this.timeoutMs)}`);
  }

  /** Fetch one commit by id (servers that allow it: GitHub, GitLab, git ≥ 2.5 with uploadpack.allowReachableSHA1InWant). Best effort. */
  async #fetchCommit(sha: string): Promise<void> {
    await withDirLock(this.cacheDir, async () => {
      await runGit(this.#repo, ['fetch', '--quiet', '--no-tags', '--no-write-fetch-head', '--', this.source.repo, sha]);
    });
  }

  /** Create the bare repository on first use: in a temporary directory renamed into place, so a half-made cache is never used. */
  async #ensureRepo(): Promise<void> {
    if (await isBareRepo(this.cacheDir)) return;
    const entries = await readdir(this.cacheDir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw new BatonError('GIT_FAILED', `git cache ${this.cacheDir} cannot be read: ${err.message}`);
    });
    if (entries && entries.length > 0) {
      throw new BatonError('GIT_FAILED', `git cache ${this.cacheDir} exists and is not a git repository; remove it or choose another directory`);
    }
    const tmp = `${this.cacheDir}.init-${process.pid}`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(path.dirname(this.cacheDir), { recursive: true });
    const r = await runGit({ ...this.#repo, gitDir: tmp }, ['init', '--bare', '--quiet', tmp]);
    if (r.code !== 0) {
      await rm(tmp, { recursive: true, force: true }).catch(() => {});
      throw new BatonError('GIT_FAILED', `git init --bare ${this.cacheDir} failed: ${describeFailure(r, this.timeoutMs)}`);
    }
    if (entries) await rm(this.cacheDir, { recursive: true, force: true }); // the empty directory
    await rename(tmp, this.cacheDir);
  }

  /**
   * Remove lock files (left by a git that was killed) older than maxAgeMs. A git
   * we run is stopped at the timeout, so a lock older than that is nobody's.
   */
  async #removeStaleLocks(maxAgeMs: number): Promise<void> {
    const now = Date.now();
    for (const lock of await findLocks(this.cacheDir)) {
      try {
        const st = await stat(lock);
        if (now - st.mtimeMs >= maxAgeMs) await unlink(lock);
      } catch {
        // gone meanwhile
      }
    }
  }
}

async function isBareRepo(dir: string): Promise<boolean> {
  try {
    const [head, objects, refs] = await Promise.all([lstat(path.join(dir, 'HEAD')), lstat(path.join(dir, 'objects')), lstat(path.join(dir, 'refs'))]);
    return head.isFile() && objects.isDirectory() && refs.isDirectory();
  } catch {
    return false;
  }
}

/** Lock files git may leave in a bare repository: top-level (index.lock, shallow.lock, packed-refs.lock, config.lock, HEAD.lock) and ref locks. */
async function findLocks(gitDir: string): Promise<string[]> {
  const out: string[] = [];
  const top = await readdir(gitDir).catch(() => [] as string[]);
  for (const name of top) if (name.endsWith('.lock')) out.push(path.join(gitDir, name));
  const refs = await readdir(path.join(gitDir, 'refs'), { recursive: true, withFileTypes: true }).catch(() => []);
  for (const e of refs) if (e.isFile() && e.name.endsWith('.lock')) out.push(path.join(e.parentPath, e.name));
  return out;
}

/** The lock file named in a failed git command's stderr, if that is why it failed. */
function lockProblem(r: RunResult): string | null {
  const m = /Unable to create '([^']+\.lock)': File exists/.exec(r.stderr) ?? /cannot lock ref '[^']*': .*?'([^']+\.lock)'/.exec(r.stderr);
  if (m?.[1]) return m[1];
  if (/cannot lock ref/.test(r.stderr)) return 'a ref';
  return null;
}
