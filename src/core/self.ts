// How baton runs itself again: the config child, the git pre-receive hook and
// the systemd unit all start another baton. The single executable is its own
// interpreter (process.execPath is the executable); an npm install or a clone
// runs bin/baton.js with the Node that runs this one.

import { isSea } from 'node:sea';
import { fileURLToPath } from 'node:url';

/** True inside the single executable (scripts/build-exe.ts). */
export function inExecutable(): boolean {
  return isSea();
}

/** The argv prefix that starts baton again: [executable] or [node, bin/baton.js]. */
export function selfCommand(): string[] {
  if (isSea()) return [process.execPath];
  // src/core/self.ts and dist/core/self.js are both two levels below the package root.
  return [process.execPath, fileURLToPath(new URL('../../bin/baton.js', import.meta.url))];
}

/**
 * The hidden first argument that makes the executable act as the config
 * loader child (src/config/isolated.ts): the executable has no separate
 * load-child script to run, so it re-executes itself in that mode.
 */
export const CONFIG_CHILD_MODE = '--baton-load-config-child';
