#!/usr/bin/env node
// Entry point. Plain JavaScript on purpose: it must parse on any Node so that an
// old Node gets one clear line instead of a syntax error or a stack trace.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `baton: Node.js 24 or newer is required (this is ${process.version}). ` +
      `Run baton through \`npm run baton --\` to use the Node pinned in package.json, or install Node 24.\n`,
  );
  process.exit(1);
}
// node:sqlite and type stripping announce themselves as experimental; the
// operator cannot act on that, so only other warnings are printed.
process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (w.name !== 'ExperimentalWarning') process.stderr.write(`${w.name}: ${w.message}\n`);
});
await import('../src/cli/main.ts');
