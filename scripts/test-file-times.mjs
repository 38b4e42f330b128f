// A node:test reporter that prints, once the run is over, how long each test
// file took: its wall time (first to last event, with files run one at a time
// this includes start-up, before/after hooks and the wait for the file's
// process to exit), the time inside its tests, and the difference. A file
// whose time outside its tests is large keeps its process alive for nothing
// (a pending timer, an open handle) or starts more than it needs.
//
// Used by `npm run test:integration` next to the spec reporter.

import path from 'node:path';
import { fileURLToPath } from 'node:url';

export default async function* fileTimes(source) {
  /** file → { first, last, inTests } in ms */
  const files = new Map();
  for await (const event of source) {
    const data = event.data ?? {};
    if (!data.file || event.type === 'test:enqueue') continue;
    const now = Date.now();
    // One file is named both as a path and as a file: URL (by different events): one row for both.
    const file = data.file.startsWith('file:') ? fileURLToPath(data.file) : path.resolve(data.file);
    let f = files.get(file);
    if (!f) files.set(file, (f = { first: now, last: now, inTests: 0 }));
    f.last = now;
    const isFileItself = typeof data.name === 'string' && (data.file.endsWith(data.name) || file.endsWith(data.name));
    if ((event.type === 'test:pass' || event.type === 'test:fail') && data.nesting === 0 && !isFileItself) {
      f.inTests += data.details?.duration_ms ?? 0;
    }
  }
  const rows = [...files].map(([file, f]) => ({ file: path.relative(process.cwd(), file), wall: f.last - f.first, inTests: f.inTests }));
  rows.sort((a, b) => b.wall - a.wall);
  const s = (ms) => `${(ms / 1000).toFixed(1)} s`.padStart(8);
  yield '\n# time per test file, slowest first: wall, inside its tests, outside them\n';
  for (const r of rows) yield `# ${s(r.wall)} ${s(r.inTests)} ${s(Math.max(0, r.wall - r.inTests))}  ${r.file}\n`;
  const total = rows.reduce((n, r) => n + r.wall, 0);
  const outside = rows.reduce((n, r) => n + Math.max(0, r.wall - r.inTests), 0);
  yield `# ${rows.length} files, ${s(total).trim()} in all, ${s(outside).trim()} of it outside the tests\n`;
}
