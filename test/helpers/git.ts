// Real git repositories for tests: an app repo whose commits are versions of
// the fixture app.

import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

const FIXTURE_APP = path.resolve(import.meta.dirname, '../fixtures/app.mjs');
const ID = ['-c', 'user.name=Ada Tester', '-c', 'user.email=ada@example.com'];

export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', [...ID, ...args], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

export interface AppRepo {
  dir: string;
  /** Commit a version of the app (server.mjs answering `version`, plus extra files); returns the sha. */
  commit(version: string, extra?: Record<string, string>, message?: string): Promise<string>;
}

export async function createAppRepo(dir: string): Promise<AppRepo> {
  await mkdir(dir, { recursive: true });
  git(dir, 'init', '--quiet', '--initial-branch', 'main');
  return {
    dir,
    async commit(version, extra = {}, message = `release ${version}`) {
      git(dir, 'rm', '-rq', '--ignore-unmatch', '.');
      const files: Record<string, string> = {
        'server.mjs': `process.env.APP_VERSION ??= ${JSON.stringify(version)};\nawait import(${JSON.stringify(FIXTURE_APP)});\n`,
        VERSION: `${version}\n`,
        ...extra,
      };
      for (const [name, content] of Object.entries(files)) {
        await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
        await writeFile(path.join(dir, name), content);
      }
      git(dir, 'add', '-A');
      git(dir, 'commit', '--quiet', '-m', message);
      return git(dir, 'rev-parse', 'HEAD');
    },
  };
}
