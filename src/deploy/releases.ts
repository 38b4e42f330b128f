// Releases from a local directory: named by their content, copied once into
// the state directory so the running code never changes under a live process,
// then reused (for rollback, and when the same content is deployed again).
// Old releases beyond the configured count are pruned (never current or standby).

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { cp, lstat, mkdir, readdir, readlink, rm, stat, rename } from 'node:fs/promises';
import path from 'node:path';
import { BatonError, errorMessage } from '../core/errors.ts';

/** Directory names skipped when copying a release: state of our own and VCS data. */
const SKIP = new Set(['.git', '.baton']);

export function releasesDir(stateDir: string, service: string): string {
  return path.join(stateDir, 'releases', service);
}

/**
 * A directory release is named by what it holds: <dir name>-<12 hex digits of
 * a SHA-256 over every path, type, permission bits, file content and link
 * target> (not times or owners; .git and .baton left out, as in the copy). So
 * deploying an unchanged directory again names the release already on disk,
 * which is reused (not copied, not built again), and releases do not pile up.
 */
export async function contentReleaseId(sourceDir: string): Promise<string> {
  const root = path.resolve(sourceDir);
  const hash = createHash('sha256');
  const walk = async (dir: string, rel: string): Promise<void> => {
    const entries = (await readdir(dir, { withFileTypes: true })).filter((e) => !SKIP.has(e.name)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const abs = path.join(dir, e.name);
      const name = rel ? `${rel}/${e.name}` : e.name;
      const st = await lstat(abs);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) hash.update(`L\0${name}\0${await readlink(abs)}\0`);
      else if (st.isDirectory()) {
        hash.update(`D\0${name}\0${mode}\0`);
        await walk(abs, name);
      } else if (st.isFile()) {
        hash.update(`F\0${name}\0${mode}\0${st.size}\0`);
        for await (const chunk of createReadStream(abs)) hash.update(chunk as Buffer);
      } else hash.update(`O\0${name}\0`); // a socket or FIFO: not copied meaningfully, named only
    }
  };
  try {
    await walk(root, '');
  } catch (err) {
    throw new BatonError('RELEASE_INVALID', `release directory ${root} cannot be read: ${errorMessage(err)}`);
  }
  const base = path.basename(root).replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 40) || 'release';
  return `${base}-${hash.digest('hex').slice(0, 12)}`;
}

/**
 * Check the source and copy it to releases/<service>/<id>. The copy goes to a
 * temporary name first and is renamed into place, so a failed copy (full disk,
 * unreadable file) never leaves a half release that looks complete.
 */
export async function copyRelease(sourceDir: string, target: string): Promise<void> {
  let st;
  try {
    st = await stat(sourceDir);
  } catch (err) {
    throw new BatonError('RELEASE_INVALID', `release directory ${sourceDir} cannot be read: ${errorMessage(err)}`);
  }
  if (!st.isDirectory()) {
    throw new BatonError('RELEASE_INVALID', `release ${sourceDir} is not a directory`);
  }
  await mkdir(path.dirname(target), { recursive: true });
  const tmp = `${target}.partial`;
  await rm(tmp, { recursive: true, force: true });
  try {
    await cp(sourceDir, tmp, {
      recursive: true,
      preserveTimestamps: true,
      verbatimSymlinks: true,
      filter: (src) => !SKIP.has(path.basename(src)) || src === sourceDir,
    });
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw new BatonError('RELEASE_INVALID', `copying release ${sourceDir} to ${target} failed: ${errorMessage(err)}`);
  }
}

/** Which releases to delete: all but the newest `keep`, never the protected ones. Pure. */
export function releasesToPrune<T extends { id: string }>(newestFirst: T[], keep: number, protectedIds: (string | null)[]): T[] {
  const keepSet = new Set(protectedIds.filter((x): x is string => x !== null));
  let kept = 0;
  const out: T[] = [];
  for (const r of newestFirst) {
    if (keepSet.has(r.id)) continue;
    if (kept < keep) {
      kept++;
      continue;
    }
    out.push(r);
  }
  return out;
}

/** Entries of a service's releases directory that no kept release names. */
export async function strayReleaseDirs(dir: string, known: ReadonlySet<string>): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => !known.has(n));
}
