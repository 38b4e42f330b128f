// Who owns a release directory when a service runs as its own user (`user:`).
// A release is readable by the app and not writable: owner the daemon's user,
// group the app's group with read (and search) rights. Only the build hook,
// which writes into the release (npm ci, compiled assets), gets the tree for
// the time it runs; it is taken back right after, so running code cannot be
// changed by the app it runs as.

import { chmod, lchown, lstat, readdir } from 'node:fs/promises';
import path from 'node:path';
import type { RunAs } from '../config/types.ts';

/** Every path under dir (dir included), without following symbolic links (shared paths are links). */
async function* walk(dir: string): AsyncGenerator<{ path: string; isDir: boolean; isLink: boolean; mode: number }> {
  const st = await lstat(dir);
  yield { path: dir, isDir: st.isDirectory(), isLink: st.isSymbolicLink(), mode: st.mode };
  if (!st.isDirectory()) return;
  for (const name of await readdir(dir)) yield* walk(path.join(dir, name));
}

/** Give the tree to the app's user (for its build hook). */
export async function handReleaseTo(dir: string, runAs: RunAs): Promise<void> {
  for await (const e of walk(dir)) await lchown(e.path, runAs.uid, runAs.gid);
}

/** Owner: the daemon's user; group: the app's, readable (and searchable), not writable. */
export async function shareReleaseWith(dir: string, runAs: RunAs): Promise<void> {
  const uid = process.getuid?.() ?? 0;
  for await (const e of walk(dir)) {
    await lchown(e.path, uid, runAs.gid);
    if (e.isLink) continue;
    const perm = e.mode & 0o7777;
    // Group read always; group search on directories and on what the owner may run.
    const groupX = e.isDir || perm & 0o100 ? 0o010 : 0;
    const want = (perm | 0o040 | groupX) & ~0o022 & ~0o6000;
    if (want !== perm) await chmod(e.path, want);
  }
}
