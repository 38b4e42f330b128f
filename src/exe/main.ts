// The single executable's entry (bundled by scripts/build-exe.ts). It plays the
// part of bin/baton.js: no Node version check (the executable carries its own
// Node 24), no dist/-or-src choice (everything is in the bundle), no execve for
// the daemon's small semi-space (the flag is baked into the executable's
// execArgv at build time). One extra mode: the config loader child.

import { CONFIG_CHILD_MODE } from '../core/self.ts';

process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (w.name !== 'ExperimentalWarning') process.stderr.write(`${w.name}: ${w.message}\n`);
});

if (process.argv[2] === CONFIG_CHILD_MODE) {
  // load-child reads its file from argv[2], as when run as a script.
  process.argv.splice(2, 1);
  void import('../config/load-child.ts');
} else {
  void import('../cli/main.ts');
}
