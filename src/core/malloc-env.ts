// glibc's malloc settings of the daemon, for the processes that are the daemon
// again: the successor of `baton upgrade` and the proxy workers. bin/baton.js
// sets them for the daemon's own start and removes them from its environment
// (the apps it starts must not inherit them), keeping each value as BATON_<name>.

const NAMES = ['MALLOC_ARENA_MAX', 'MALLOC_TRIM_THRESHOLD_'] as const;

/** The settings bin/baton.js gave this daemon, to add to a daemon process's environment. */
export function daemonMallocEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of NAMES) {
    const v = process.env[`BATON_${name}`];
    if (v !== undefined) out[name] = v;
  }
  return out;
}
