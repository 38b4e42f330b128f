// The table of verbs. A new verb is one entry here (and its command in
// commands/): its flags and arguments are checked, its help printed and its
// completion generated from this entry alone.

import { CONNECT_FLAGS, JSON_FLAG, type ArgSpec, type VerbSpec } from './verb.ts';

const SERVICE: ArgSpec = { name: 'SERVICE', complete: 'none' };

export const VERBS: readonly VerbSpec[] = [
  {
    name: 'daemon',
    summary: 'run the daemon in the foreground',
    help: 'Logs JSON lines on stdout. SIGTERM or SIGINT stop the daemon and leave the instances running for the next one; SIGHUP reloads the config.',
    args: [],
    flags: { config: CONNECT_FLAGS.config },
    load: async () => (await import('./commands/daemon.ts')).daemonCommand,
  },
  {
    name: 'check',
    summary: 'validate a config file without starting anything',
    help: 'Exit status 0 when the file is valid; otherwise 1 and each problem as file:line:col: key: message.',
    args: [],
    flags: { config: CONNECT_FLAGS.config, ...JSON_FLAG },
    load: async () => (await import('./commands/check.ts')).checkCommand,
  },
  {
    name: 'deploy',
    summary: 'blue/green (or canary) deploy of a directory, or of the service\'s git branch/tag/commit',
    help: 'Without DIR or --ref, deploys the head of the branch in the service\'s git: section. Prints each step and exits 0 when done, 1 when the deploy failed (the serving release is untouched).',
    args: [SERVICE, { name: 'DIR', optional: true, complete: 'dir' }],
    flags: {
      ref: { type: 'string', value: 'REF', help: 'a branch, tag or commit of the service\'s git repository' },
      strategy: { type: 'string', value: 'STRATEGY', choices: ['blue_green', 'canary'], help: 'override the service\'s configured strategy' },
      ...JSON_FLAG,
      ...CONNECT_FLAGS,
    },
    load: async () => (await import('./commands/deploy.ts')).deployCommand,
  },
  {
    name: 'git-remote',
    summary: 'create a bare repository: `git push` to it deploys',
    help: 'Writes a pre-receive hook that deploys each push to BRANCH; a failed deploy rejects the push.',
    args: [SERVICE, { name: 'DIR', complete: 'dir' }],
    flags: {
      branch: { type: 'string', value: 'BRANCH', help: 'the branch whose pushes deploy (default: main)' },
      ...CONNECT_FLAGS,
    },
    load: async () => (await import('./commands/git-remote.ts')).gitRemoteCommand,
  },
  {
    name: 'deploy-push',
    summary: 'deploy a pushed commit (run by the git-remote hook)',
    args: [SERVICE],
    flags: {
      'git-dir': { type: 'string', value: 'DIR', help: 'the pushed-to repository', complete: 'dir' },
      commit: { type: 'string', value: 'SHA', help: 'the pushed commit' },
      ref: { type: 'string', value: 'REF', help: 'the pushed branch' },
      ...JSON_FLAG,
      ...CONNECT_FLAGS,
    },
    hidden: true,
    load: async () => (await import('./commands/deploy.ts')).deployPushCommand,
  },
  {
    name: 'rollback',
    summary: 'switch back to the previous (or a named) release',
    args: [SERVICE],
    flags: {
      to: { type: 'string', value: 'RELEASE', help: 'a kept release (see `baton releases SERVICE`) instead of the previous one' },
      ...JSON_FLAG,
      ...CONNECT_FLAGS,
    },
    load: async () => (await import('./commands/deploy.ts')).rollbackCommand,
  },
  {
    name: 'restart',
    summary: 'zero-downtime restart of the current release',
    args: [SERVICE],
    flags: { ...JSON_FLAG, ...CONNECT_FLAGS },
    load: async () => (await import('./commands/deploy.ts')).restartCommand,
  },
  {
    name: 'promote',
    summary: 'move a canary on to its next step (or straight to 100%)',
    args: [SERVICE],
    flags: {
      full: { type: 'boolean', help: 'skip the remaining steps: all traffic to the canary' },
      ...JSON_FLAG,
      ...CONNECT_FLAGS,
    },
    load: async () => (await import('./commands/traffic.ts')).promoteCommand,
  },
  {
    name: 'abort',
    summary: 'roll a canary back: all traffic to the stable release',
    args: [SERVICE],
    flags: { ...JSON_FLAG, ...CONNECT_FLAGS },
    load: async () => (await import('./commands/traffic.ts')).abortCommand,
  },
  {
    name: 'beta',
    summary: 'a one-time link that makes its visitor a beta tester',
    args: [SERVICE],
    flags: {
      ttl: { type: 'string', value: 'DURATION', help: 'how long the link stays valid (default: 24h)' },
      ...JSON_FLAG,
      ...CONNECT_FLAGS,
    },
    load: async () => (await import('./commands/traffic.ts')).betaCommand,
  },
  {
    name: 'maintenance',
    summary: 'a 503 page for everyone but the allow-list, or back to normal',
    args: [SERVICE, { name: 'MODE', choices: ['on', 'off'] }],
    flags: {
      message: { type: 'string', value: 'TEXT', help: 'a line for the maintenance page' },
      ...JSON_FLAG,
      ...CONNECT_FLAGS,
    },
    load: async () => (await import('./commands/traffic.ts')).maintenanceCommand,
  },
  {
    name: 'pause',
    summary: 'hold new requests (bounded) until resume',
    args: [SERVICE],
    flags: { ...JSON_FLAG, ...CONNECT_FLAGS },
    load: async () => (await import('./commands/traffic.ts')).pauseCommand,
  },
  {
    name: 'resume',
    summary: 'deliver the held requests',
    args: [SERVICE],
    flags: { ...JSON_FLAG, ...CONNECT_FLAGS },
    load: async () => (await import('./commands/traffic.ts')).resumeCommand,
  },
  {
    name: 'status',
    summary: 'releases, instances and traffic of every service (or one)',
    args: [{ ...SERVICE, optional: true }],
    flags: { ...JSON_FLAG, ...CONNECT_FLAGS },
    load: async () => (await import('./commands/read.ts')).statusCommand,
  },
  {
    name: 'releases',
    summary: 'the kept releases of a service',
    args: [SERVICE],
    flags: { ...JSON_FLAG, ...CONNECT_FLAGS },
    load: async () => (await import('./commands/read.ts')).releasesCommand,
  },
  {
    name: 'history',
    summary: 'past deployments of a service (or one, step by step)',
    args: [SERVICE, { name: 'DEPLOYMENT', optional: true, complete: 'none' }],
    flags: { ...JSON_FLAG, ...CONNECT_FLAGS },
    load: async () => (await import('./commands/read.ts')).historyCommand,
  },
  {
    name: 'logs',
    summary: 'the output of a service\'s instances',
    args: [SERVICE],
    flags: {
      follow: { type: 'boolean', short: 'f', help: 'keep printing new lines until interrupted' },
      lines: { type: 'string', short: 'n', value: 'N', help: 'lines of each instance\'s log to print first (default: 50)' },
      ...JSON_FLAG,
      ...CONNECT_FLAGS,
    },
    load: async () => (await import('./commands/read.ts')).logsCommand,
  },
  {
    name: 'reload',
    summary: 'make the daemon re-read its config file',
    help: 'A config with errors changes nothing: the daemon keeps the running configuration and the errors are printed.',
    args: [],
    flags: { ...JSON_FLAG, ...CONNECT_FLAGS },
    load: async () => (await import('./commands/admin.ts')).reloadCommand,
  },
  {
    name: 'shutdown',
    summary: 'stop the daemon (the instances keep running unless --stop-instances)',
    args: [],
    flags: {
      'stop-instances': { type: 'boolean', help: 'drain and stop every instance too' },
      ...CONNECT_FLAGS,
    },
    load: async () => (await import('./commands/admin.ts')).shutdownCommand,
  },
  {
    name: 'systemd',
    summary: 'print (or install) the systemd unit that runs this baton\'s daemon',
    help: 'KillMode=process: a daemon restart leaves the app instances running (docs/server.md).\nExecStart names this baton (the executable, or Node and bin/baton.js), resolved.',
    args: [],
    flags: {
      user: { type: 'string', value: 'USER', help: 'run the daemon as this user, binding :80/:443 with CAP_NET_BIND_SERVICE (default: root)', complete: 'none' },
      config: { type: 'string', short: 'c', value: 'FILE', help: 'the config file the unit passes (default: $BATON_CONFIG, else /etc/baton/baton.yaml)', complete: 'file' },
      install: { type: 'boolean', help: 'write the unit to /etc/systemd/system/baton.service (or --unit-dir) instead of printing it' },
      'unit-dir': { type: 'string', value: 'DIR', help: 'where --install writes baton.service', complete: 'dir' },
    },
    load: async () => (await import('./commands/systemd.ts')).systemdCommand,
  },
  {
    name: 'completion',
    summary: 'print a shell completion script (bash or zsh)',
    help: 'bash: `source <(baton completion bash)` (or save it under /etc/bash_completion.d/baton).\nzsh: `baton completion zsh > "${fpath[1]}/_baton"`, then restart the shell.',
    args: [{ name: 'SHELL', choices: ['bash', 'zsh'] }],
    flags: {},
    load: async () => (await import('./commands/completion.ts')).completionCommand,
  },
];
