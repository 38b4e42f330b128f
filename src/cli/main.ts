// The CLI entry: parse arguments against the table of verbs, run one verb,
// turn errors into messages and exit statuses (docs/errors.md). The only place
// that calls process.exit.

import { EXIT, isBatonError } from '../core/errors.ts';
import { VERSION } from '../core/version.ts';
import type { CliContext } from './context.ts';
import { overview, parseCommandLine, verbHelp } from './parse.ts';
import { VERBS } from './verbs.ts';

// `baton status | head -1`: the reader went away, which is not an error of ours,
// so the command ends quietly. The daemon goes on (without its log on stdout).
let runningDaemon = false;
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    if (!runningDaemon) process.exit(EXIT.OK);
  });
}

async function main(argv: string[]): Promise<number> {
  const out = (s: string): void => void process.stdout.write(s);
  const err = (s: string): void => void process.stderr.write(s);
  const json = argv.includes('--json');
  let ctx: CliContext | null = null;
  try {
    const parsed = parseCommandLine(argv, VERBS);
    if (parsed.kind === 'version') {
      out(`${VERSION}\n`);
      return EXIT.OK;
    }
    if (parsed.kind === 'help') {
      out(parsed.verb ? verbHelp(parsed.verb) : overview(VERBS, parsed.group));
      // `baton` alone is a usage error (a script that lost its verb); asking for help is not.
      return argv.length === 0 ? EXIT.USAGE : EXIT.OK;
    }
    runningDaemon = parsed.verb.name === 'daemon';
    ctx = { args: parsed.args, flags: parsed.flags, json: parsed.flags['json'] === true, out, err };
    return await (await parsed.verb.load())(ctx);
  } catch (e) {
    if (isBatonError(e)) {
      if (ctx?.json ?? json) out(JSON.stringify({ error: e.toJSON() }) + '\n');
      err(`baton: ${e.message}\n${e.details.map((d) => `  ${d}\n`).join('')}`);
      return e.exitStatus;
    }
    err(`baton: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return EXIT.FAILED;
  }
}

// No top-level await: the single executable bundles this file as CommonJS.
void main(process.argv.slice(2)).then((code) => {
  // Every verb exits now; the daemon's verb only resolves once the daemon has stopped. Exiting
  // (not waiting for the loop to empty) also matters after `baton upgrade`: the old daemon leaves
  // its control listener open, since libuv unlinks a Unix socket's path when its listener closes,
  // and that path is the successor's now.
  process.exit(code);
});
