// Releases from a local directory: copied once into the state directory so the
// running code never changes under a live process, then reused for rollback.
// Old releases beyond the configured count are pruned (never current or standby).

import { cp, mkdir, rm, stat, rename } from 'node:fs/promises';
import path from 'node:path';
import { BatonError, errorMessage } from '../core/errors.ts';

/** Directory names skipped when copying a release: state of our own and VCS data. */
const SKIP = new Set(['.git', '.baton']);

export function releasesDir(stateDir: string, service: string): string {
  return path.join(stateDir, 'releases', service);
}

/** A sortable, readable id: 20261122-134501-v2 (plus -2, -3… if taken within the same second). */
export function makeReleaseId(sourceDir: string, now: Date, taken: (id: string) => boolean): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const base = path.basename(path.resolve(sourceDir)).replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 40) || 'release';
  let id = `${stamp}-${base}`;
  for (let n = 2; taken(id); n++) id = `${stamp}-${base}-${n}`;
  return id;
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
