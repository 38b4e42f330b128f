#!/usr/bin/env node
// Entry point. Plain JavaScript on purpose: it must parse on any Node so that an
// old Node gets one clear line instead of a syntax error or a stack trace.
import { existsSync, readdirSync, statSync } from 'node:fs';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `baton: Node.js 24 or newer is required (this is ${process.version} at ${process.execPath}); ` +
      `install Node 24, or use the single executable baton-linux-x64, which carries its own.\n`,
  );
  process.exit(1);
}

/** The verb: the first argument that is neither a flag nor the value of --config/-c/--socket (as src/cli/parse.ts reads it). */
function verb(args) {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--config' || args[i] === '-c' || args[i] === '--socket') i++;
    else if (!args[i].startsWith('-')) return args[i];
  }
  return undefined;
}

// A small young generation keeps the mostly idle daemon's memory low (V8's
// default grew the daemon's peak under load to 119 MB). 1 MB was the size
// until the lean path allocated 25% less per request: with 5.3 kB a request,
// 4 MB stops the event loop for scavenges 3.6 times less often (a third of the
// pause time: 1.3 against 3.8 µs a request; the CPU per request the same) and
// gave the lower p99 at a fixed rate in 5 of 6 runs, for 4.5 MB more at peak
// and nothing idle (bench/RESULTS.md section 22).
const SEMI_SPACE = '--max-semi-space-size=4';
// The proxy collects the young generation after every few MiB it streams, so
// that dead read buffers do not pile up on glibc's heap (src/proxy/gc-pacer.ts).
const EXPOSE_GC = '--expose-gc';
// glibc's malloc settings of the daemon (bench/RESULTS.md, "proxy cost" and
// section 12). MALLOC_ARENA_MAX: glibc gives threads that allocate at the same
// time arenas of their own (up to 8 per core), and what is freed in one stays with
// the process; the daemon is one JavaScript thread and a few helpers, two arenas
// are enough (5-9 MB smaller under and after load). MALLOC_TRIM_THRESHOLD_: free
// memory at the top of an arena goes back to the system once it passes 128 KiB;
// left to itself glibc raises that threshold after the first large block it
// frees, and the daemon then kept 3-5 MB more a minute after a load. (With
// MALLOC_TOP_PAD_=0 as well, glibc made 4.5x the brk calls for no memory
// measurably saved.) glibc reads these once, at start: they are set for
// the daemon's execve and removed from its environment right after, so that the
// apps it starts do not inherit them; BATON_<name> keeps each value for the
// processes that are the daemon again (`baton upgrade`'s successor, proxy
// workers: src/core/malloc-env.ts). An operator's own value of each wins.
const MALLOC = { MALLOC_ARENA_MAX: '2', MALLOC_TRIM_THRESHOLD_: '131072' };
const isDaemon = verb(process.argv.slice(2)) === 'daemon';
// Not under systemd socket activation: process.execve closes the inherited
// listening sockets (fd 3…); put the flags in ExecStart instead (docs/server.md).
if (isDaemon && !process.execArgv.includes(SEMI_SPACE) && typeof process.execve === 'function' && !process.env.LISTEN_FDS) {
  // V8 reads these flags only at start, so the process replaces itself with the
  // flags set: same pid, nothing in between.
  const env = { ...process.env };
  for (const [name, value] of Object.entries(MALLOC)) {
    if (env[name] !== undefined) continue;
    env[name] = value;
    env[`BATON_${name}`] = value;
  }
  process.execve(process.execPath, [process.execPath, SEMI_SPACE, EXPOSE_GC, ...process.execArgv, ...process.argv.slice(1)], env);
}
if (isDaemon) {
  for (const name of Object.keys(MALLOC)) {
    if (process.env[`BATON_${name}`] !== undefined && process.env[name] === process.env[`BATON_${name}`]) delete process.env[name];
  }
}

// node:sqlite and type stripping announce themselves as experimental; the
// operator cannot act on that, so only other warnings are printed.
process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (w.name !== 'ExperimentalWarning') process.stderr.write(`${w.name}: ${w.message}\n`);
});

/**
 * The compiled dist/ when it is at least as new as every source file; the
 * sources otherwise. An installed npm package ships dist/ only.
 */
function entry() {
  const root = new URL('..', import.meta.url);
  const src = new URL('src/', root);
  if (!existsSync(src)) return new URL('dist/cli/main.js', root);
  const stamp = new URL('dist/.built', root);
  if (!existsSync(stamp)) return new URL('src/cli/main.ts', root);
  const built = statSync(stamp).mtimeMs;
  for (const f of readdirSync(src, { recursive: true })) {
    if (statSync(new URL(String(f), src)).mtimeMs > built) return new URL('src/cli/main.ts', root);
  }
  return new URL('dist/cli/main.js', root);
}

await import(entry().href);
