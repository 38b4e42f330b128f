// The CLI entry: parse arguments, run one verb, turn errors into messages and
// exit codes. The only place that calls process.exit.

import { parseArgs } from 'node:util';
import { errorMessage, isBatonError } from '../core/errors.ts';
import { VERSION } from '../core/version.ts';
import type { CliContext } from './context.ts';

type Command = (ctx: CliContext) => Promise<number>;

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  daemon: { summary: 'daemon [--config FILE]            run the daemon in the foreground', load: async () => (await import('./commands/daemon.ts')).daemonCommand },
  deploy: { summary: 'deploy SERVICE [DIR | --ref REF]  blue/green deploy of a directory, or of the service\'s git branch/tag/commit', load: async () => (await import('./commands/deploy.ts')).deployCommand },
  'git-remote': { summary: 'git-remote SERVICE DIR [--branch B]  a bare repository: `git push` to it deploys', load: async () => (await import('./commands/git-remote.ts')).gitRemoteCommand },
  'deploy-push': { summary: 'deploy-push SERVICE …              (run by the git-remote hook)', load: async () => (await import('./commands/deploy.ts')).deployPushCommand },
  rollback: { summary: 'rollback SERVICE [--to RELEASE]   switch back to the previous (or named) release', load: async () => (await import('./commands/deploy.ts')).rollbackCommand },
  restart: { summary: 'restart SERVICE                   zero-downtime restart of the current release', load: async () => (await import('./commands/deploy.ts')).restartCommand },
  promote: { summary: 'promote SERVICE [--full]          next canary step (or straight to 100%)', load: async () => (await import('./commands/traffic.ts')).promoteCommand },
  abort: { summary: 'abort SERVICE                     roll a canary back: all traffic to the stable release', load: async () => (await import('./commands/traffic.ts')).abortCommand },
  beta: { summary: 'beta SERVICE [--ttl 24h]          a one-time link that makes its visitor a beta tester', load: async () => (await import('./commands/traffic.ts')).betaCommand },
  maintenance: { summary: 'maintenance SERVICE on|off [--message TEXT]  a 503 page for all but the allow-list', load: async () => (await import('./commands/traffic.ts')).maintenanceCommand },
  pause: { summary: 'pause SERVICE                     hold new requests (bounded) until resume', load: async () => (await import('./commands/traffic.ts')).pauseCommand },
  resume: { summary: 'resume SERVICE                    deliver the held requests', load: async () => (await import('./commands/traffic.ts')).resumeCommand },
  status: { summary: 'status [SERVICE] [--json]         releases and instances', load: async () => (await import('./commands/read.ts')).statusCommand },
  releases: { summary: 'releases SERVICE [--json]         kept releases', load: async () => (await import('./commands/read.ts')).releasesCommand },
  history: { summary: 'history SERVICE [--json]          past deployments', load: async () => (await import('./commands/read.ts')).historyCommand },
  logs: { summary: 'logs SERVICE [--follow] [--lines N]  instance output', load: async () => (await import('./commands/read.ts')).logsCommand },
  reload: { summary: 'reload                            re-read the daemon\'s config file', load: async () => (await import('./commands/admin.ts')).reloadCommand },
  shutdown: { summary: 'shutdown [--stop-instances]       stop the daemon', load: async () => (await import('./commands/admin.ts')).shutdownCommand },
};

function usage(): string {
  return [
    `baton ${VERSION}: zero-downtime deploys for web apps`,
    '',
    'usage: baton COMMAND [ARGS] [--config FILE | --socket PATH] [--json]',
    '',
    ...Object.values(COMMANDS).map((c) => `  baton ${c.summary}`),
    '',
    'The CLI finds the daemon through the config file (default ./baton.yaml) or --socket.',
  ].join('\n') + '\n';
}

async function main(argv: string[]): Promise<number> {
  const out = (s: string): void => void process.stdout.write(s);
  const err = (s: string): void => void process.stderr.write(s);
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string', short: 'c' },
        socket: { type: 'string' },
        json: { type: 'boolean' },
        to: { type: 'string' },
        ref: { type: 'string' },
        strategy: { type: 'string' },
        full: { type: 'boolean' },
        message: { type: 'string' },
        ttl: { type: 'string' },
        branch: { type: 'string' },
        'git-dir': { type: 'string' },
        commit: { type: 'string' },
        follow: { type: 'boolean', short: 'f' },
        lines: { type: 'string', short: 'n' },
        'stop-instances': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
    });
  } catch (e) {
    err(`baton: ${errorMessage(e)}\n\n${usage()}`);
    return 2;
  }
  const [verb, ...args] = parsed.positionals;
  if (parsed.values.version) {
    out(`${VERSION}\n`);
    return 0;
  }
  if (!verb || parsed.values.help || verb === 'help') {
    out(usage());
    return verb || parsed.values.help ? 0 : 2;
  }
  const cmd = COMMANDS[verb];
  if (!cmd) {
    err(`baton: unknown command "${verb}"\n\n${usage()}`);
    return 2;
  }
  const ctx: CliContext = { args, flags: parsed.values, json: parsed.values.json === true, out, err };
  try {
    return await (await cmd.load())(ctx);
  } catch (e) {
    if (isBatonError(e)) {
      if (ctx.json) out(JSON.stringify({ error: e.toJSON() }) + '\n');
      err(`baton: ${e.message}\n${e.details.map((d) => `  ${d}\n`).join('')}`);
      return e.code === 'USAGE' ? 2 : 1;
    }
    err(`baton: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  }
}

// No top-level await: the single executable bundles this file as CommonJS.
void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
  // Only the daemon keeps the process alive on purpose; any other verb exits now.
  if (process.argv[2] !== 'daemon') process.exit(code);
});
