// Where a deployment's release comes from: a local directory (copied), the
// service's git repository at a ref (fetched into a per-service object cache
// and exported), or a pushed commit (exported from the pushed repository, for
// `git push` deploys). Resolving happens before the deployment is recorded; the
// copy or export itself is the deployment's first work ('preparing'). A release
// of the same commit that is already on disk is reused as it is.

import { existsSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { GitSourceConfig } from '../config/types.ts';
import type { DeploySource } from '../core/deployment.ts';
import { BatonError, errorMessage } from '../core/errors.ts';
import { GitCache, commitInfoFromGitDir, exportFromGitDir, gitReleaseId, type GitCommitInfo } from '../git/index.ts';
import type { Store } from '../store/index.ts';
import type { DeployPlan } from './deployer.ts';
import { contentReleaseId, copyRelease, releasesDir } from './releases.ts';
import type { ServiceRuntime } from './service-runtime.ts';

export class ReleaseSources {
  readonly #store: Store;
  readonly #stateDir: string;
  readonly #configFile: () => string;
  readonly #caches = new Map<string, { key: string; cache: GitCache }>();

  constructor(opts: { store: Store; stateDir: string; configFile: () => string }) {
    this.#store = opts.store;
    this.#stateDir = opts.stateDir;
    this.#configFile = opts.configFile;
  }

  async plan(rt: ServiceRuntime, source: DeploySource): Promise<Pick<DeployPlan, 'release' | 'materialise'>> {
    const service = rt.name;
    const base = releasesDir(this.#stateDir, service);
    if (source.dir !== undefined) {
      const from = path.resolve(source.dir);
      // Refused before a deployment is even recorded: nothing to undo.
      const st = await stat(from).catch((err: unknown) => {
        throw new BatonError('RELEASE_INVALID', `release directory ${from} cannot be read: ${errorMessage(err)}`);
      });
      if (!st.isDirectory()) throw new BatonError('RELEASE_INVALID', `release ${from} is not a directory`);
      const id = await contentReleaseId(from);
      const dir = path.join(base, id);
      return {
        release: { id, dir },
        materialise: async (report) => {
          if (this.#store.getRelease(service, id) !== null && existsSync(dir)) {
            report.info(`release ${id} (the same content as ${from}) is already on disk: not copying again`);
            return;
          }
          const t0 = Date.now();
          await rm(dir, { recursive: true, force: true });
          await copyRelease(from, dir);
          this.#store.deleteRelease(service, id); // a record whose directory was lost: replaced
          this.#store.addRelease({ id, service, name: path.basename(from), kind: 'dir', sourcePath: from, dir, createdAt: Date.now() });
          report.info(`copied ${from} to ${dir}`, Date.now() - t0);
        },
      };
    }
    let info: GitCommitInfo;
    let repo: string;
    let exportTo: (dir: string) => Promise<{ files: number; durationMs: number }>;
    if (source.push) {
      const push = source.push;
      repo = push.gitDir;
      info = { ...(await commitInfoFromGitDir({ gitDir: push.gitDir, env: push.env, commit: push.commit })), ref: push.ref };
      exportTo = (dir) => exportFromGitDir({ gitDir: push.gitDir, env: push.env, commit: push.commit, targetDir: dir });
    } else {
      const git = rt.config.git;
      if (!git) {
        throw new BatonError('BAD_REQUEST', `services.${service}.git is not configured in ${this.#configFile()}: give a release directory (\`baton deploy ${service} DIR\`) or configure a git repository`);
      }
      const cache = this.#gitCache(rt, git);
      repo = git.repo;
      info = await cache.resolve(source.ref);
      exportTo = (dir) => cache.export(info.commit, dir);
    }
    const id = gitReleaseId(info);
    const dir = path.join(base, id);
    return {
      release: { id, dir },
      materialise: async (report) => {
        const known = this.#store.getRelease(service, id);
        report.info(`commit ${info.shortCommit} (${info.ref}) by ${info.author}: ${info.subject}`);
        if (known && existsSync(dir)) {
          report.info(`release ${id} is already on disk: not exporting again`);
          return;
        }
        // A directory without a record (a crash between export and record) is not trusted.
        await rm(dir, { recursive: true, force: true });
        const r = await exportTo(dir);
        if (!known) {
          this.#store.addRelease({
            id,
            service,
            name: info.ref,
            kind: 'git',
            sourcePath: repo,
            dir,
            git: { commit: info.commit, ref: info.ref, author: info.author, message: info.subject },
            createdAt: Date.now(),
          });
        }
        report.info(`exported ${r.files} file(s) of ${info.shortCommit} to ${dir}`, r.durationMs);
      },
    };
  }

  #gitCache(rt: ServiceRuntime, git: GitSourceConfig): GitCache {
    const key = `${git.repo}#${git.branch}`;
    let c = this.#caches.get(rt.name);
    if (!c || c.key !== key) {
      c = { key, cache: new GitCache({ cacheDir: path.join(this.#stateDir, 'git', `${rt.name}.git`), source: { repo: git.repo, branch: git.branch } }) };
      this.#caches.set(rt.name, c);
    }
    return c.cache;
  }
}
