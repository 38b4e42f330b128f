// Where the daemon's resident memory is, measured inside the daemon: loaded with
// `--import` through NODE_OPTIONS by bench/memory.ts (--probe). In the daemon
// process only (the CLI runs and the app instances get NODE_OPTIONS too, and
// return here at once), it appends one JSON line per second to
// $BATON_MEMORY_PROBE_FILE: process.memoryUsage(), V8's heap (committed and
// physical, per space), and /proc/self/smaps split into glibc's main heap
// ([heap]), anonymous mappings (V8's pages, other malloc arenas, thread stacks)
// and file-backed pages (the node binary, libraries).
import { appendFileSync, readFileSync } from 'node:fs';
import v8 from 'node:v8';

const file = process.env.BATON_MEMORY_PROBE_FILE;
const isDaemon = process.argv.slice(2).includes('daemon');

/** kB of Rss by kind of mapping, from /proc/self/smaps. */
function smaps() {
  // nodeText / nodeRead: the node binary's executable and read-only pages (also in `file`).
  const out = { heap: 0, anon: 0, file: 0, stack: 0, other: 0, anonMappings: 0, nodeText: 0, nodeRead: 0 };
  let kind = 'other';
  let node = null;
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head !== null) {
      const name = head[2];
      kind = name === '' ? 'anon' : name === '[heap]' ? 'heap' : name.startsWith('[stack') ? 'stack' : name.startsWith('/') ? 'file' : 'other';
      node = name === process.execPath ? (head[1].includes('x') ? 'nodeText' : 'nodeRead') : null;
      if (kind === 'anon') out.anonMappings++;
      continue;
    }
    if (line.startsWith('Rss:')) {
      const kb = Number(line.slice(4).trim().split(' ')[0]);
      out[kind] += kb;
      if (node !== null) out[node] += kb;
    }
  }
  return out;
}

function sample() {
  const m = process.memoryUsage();
  const h = v8.getHeapStatistics();
  const spaces = {};
  for (const s of v8.getHeapSpaceStatistics()) spaces[s.space_name.replace(/_space$/, '')] = Math.round(s.physical_space_size / 1024);
  const kb = (n) => Math.round(n / 1024);
  return {
    t: Date.now(),
    rss: kb(m.rss),
    heapTotal: kb(m.heapTotal),
    heapUsed: kb(m.heapUsed),
    external: kb(m.external),
    arrayBuffers: kb(m.arrayBuffers),
    v8Physical: kb(h.total_physical_size),
    v8Malloced: kb(h.malloced_memory),
    spaces,
    smaps: smaps(),
  };
}

if (isDaemon && file) {
  setInterval(() => {
    try {
      appendFileSync(file, JSON.stringify(sample()) + '\n');
    } catch {
      // the bench's temp dir is gone: the daemon is being stopped
    }
  }, 1000).unref();
}
