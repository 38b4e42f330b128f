// One artifact, the same bytes everywhere: a release is materialised once on
// the operator's machine (a directory as it is, or a git commit exported),
// packed as a tar file and named by its sha256, which each host checks on
// arrival before unpacking it.

import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { BatonError, errorMessage } from '../core/errors.ts';

const run = promisify(execFile);

export interface Artifact {
  /** The directory name it is unpacked under on each host (and the release's name there). */
  name: string;
  file: string;
  sha256: string;
  bytes: number;
  /** What it was made from: a directory, or a commit. */
  source: string;
  tmpDir: string;
}

async function sha256Of(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function tarDir(dir: string, file: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    // Sorted names and fixed owner/mtime-free metadata are not needed for the
    // checksum's purpose (same bytes to every host): it is computed once here.
    const c = spawn('tar', ['-C', dir, '-cf', file, '.'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d) => (err += d));
    c.once('error', reject);
    c.once('close', (code) => (code === 0 ? resolve() : reject(new BatonError('RELEASE_INVALID', `packing ${dir} failed: ${err.trim()}`))));
  });
}

/** Pack a local release directory. */
export async function artifactFromDir(dir: string, service: string): Promise<Artifact> {
  const from = path.resolve(dir);
  const st = await stat(from).catch((err: unknown) => {
    throw new BatonError('RELEASE_INVALID', `release directory ${from} cannot be read: ${errorMessage(err)}`);
  });
  if (!st.isDirectory()) throw new BatonError('RELEASE_INVALID', `release ${from} is not a directory`);
  const tmpDir = await mkdtemp(path.join(os.tmpdir(), 'baton-artifact-'));
  const file = path.join(tmpDir, 'release.tar');
  try {
    await tarDir(from, file);
    const sha256 = await sha256Of(file);
    const base = path.basename(from).replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 24) || service;
    return { name: `${base}-${sha256.slice(0, 12)}`, file, sha256, bytes: (await stat(file)).size, source: from, tmpDir };
  } catch (err) {
    await rm(tmpDir, { recursive: true, force: true });
    throw err;
  }
}

/** Export a commit of a local git repository (`git archive`) and pack it. */
export async function artifactFromGit(repo: string, ref: string, service: string): Promise<Artifact> {
  let commit: string;
  try {
    commit = (await run('git', ['-C', repo, 'rev-parse', '--verify', '--end-of-options', `${ref}^{commit}`])).stdout.trim();
  } catch (err) {
    throw new BatonError('GIT_REF_UNKNOWN', `${repo}: no commit "${ref}": ${((err as { stderr?: string }).stderr ?? errorMessage(err)).trim()}`);
  }
  const tmpDir = await mkdtemp(path.join(os.tmpdir(), 'baton-artifact-'));
  const file = path.join(tmpDir, 'release.tar');
  try {
    await run('git', ['-C', repo, 'archive', '--format=tar', '-o', file, commit]);
    const sha256 = await sha256Of(file);
    return { name: `${service}-${commit.slice(0, 12)}`, file, sha256, bytes: (await stat(file)).size, source: `${repo} ${ref} (${commit})`, tmpDir };
  } catch (err) {
    await rm(tmpDir, { recursive: true, force: true });
    throw err instanceof BatonError ? err : new BatonError('GIT_FAILED', `exporting ${commit} from ${repo} failed: ${errorMessage(err)}`);
  }
}

export async function discardArtifact(a: Artifact): Promise<void> {
  await rm(a.tmpDir, { recursive: true, force: true });
}
