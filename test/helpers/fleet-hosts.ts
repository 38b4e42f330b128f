// Test harness for fleets: N real hosts on loopback, each a real OpenSSH
// server (its own host key, config and log) plus its own baton daemon (its own
// state directory and listener), an operator side (an ssh config with one
// alias per host, a known_hosts file filled with the real host keys, a key
// pair, an operator state directory), and a real HAProxy in front with the
// hosts as servers. Each host has its own loopback address (127.0.0.11, .12, …)
// so the hosts differ the way real ones do. Everything started is stopped in
// cleanup(): ssh masters first (their sshd sessions end with them), then the
// daemons with their instances, HAProxy, and the sshd listeners.

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { killInstanceGroups, waitUntil, type CliResult } from './daemon.ts';
import { settlesWithin } from './timeouts.ts';
import { freePort, HeldListeners, PortInUse, saysPortInUse, startOnFreePorts } from './ports.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
export const BATON = path.join(ROOT, 'bin/baton.js');
const FIXTURE_APP = path.join(ROOT, 'test/fixtures/app.mjs');
const SSHD = '/usr/sbin/sshd';

export interface FleetHost {
  /** The ssh alias in the operator's ssh config (h1, h2, …). */
  name: string;
  address: string; // 127.0.0.11, …
  /** sshd's port (final once createFleet has returned). */
  sshPort: number;
  port: number; // baton's public listener
  agentPort: number; // baton's HAProxy agent-check listener
  dir: string;
  configFile: string;
  /** The command line that runs this host's baton (as the fleet file gives it). */
  batonCommand: string;
  /** Run this host's baton locally (not over ssh), for checks. */
  cli(args: string[], timeoutMs?: number): Promise<CliResult>;
  status(service?: string): Promise<any>;
  writeConfig(services: string): Promise<void>;
  startDaemon(): Promise<void>;
  stopDaemon(): Promise<void>;
  /** SIGKILL the daemon (its instances live on, as after a crash). */
  killDaemon(): Promise<void>;
  startSshd(): Promise<void>;
  stopSshd(): Promise<void>;
  /** Replace this host's ssh host key (the operator's known_hosts keeps the old one). */
  changeHostKey(): Promise<void>;
  /** How many ssh connections sshd accepted since it started. */
  sshConnections(): Promise<number>;
  daemonLog(): Promise<string>;
}

export interface TestFleet {
  dir: string;
  hosts: FleetHost[];
  /** The operator's ssh config (ssh -F), the key and known_hosts it names. */
  sshConfig: string;
  /** The operator's state directory (XDG_STATE_HOME). */
  stateHome: string;
  /** ControlPath directory the fleet CLI is told to use (BATON_SSH_CONTROL_DIR). */
  controlDir: string;
  haproxy: { url: string; socket: string; port: number; backend: string } | null;
  /** A release directory of the fixture app answering with `version`. */
  release(version: string, files?: Record<string, string>): Promise<string>;
  /** Run the operator's `baton fleet …` (locally), with the fleet file. */
  fleet(args: string[], opts?: { timeoutMs?: number; onStdout?: (chunk: string) => void; env?: Record<string, string> }): Promise<CliResult>;
  /** Start `baton fleet …` and return the child (for signals). */
  spawnFleet(args: string[]): { proc: ChildProcess; done: Promise<CliResult>; stdout: () => string };
  writeFleetFile(text: string): Promise<string>;
  fleetFile: string;
  haproxyCommand(cmd: string): Promise<string>;
  cleanup(): Promise<void>;
}

export interface FleetOptions {
  hosts: number;
  /** The services: section of each host's baton.yaml (same on every host unless perHost says otherwise). */
  services: (host: number) => string;
  /** Start HAProxy in front: agent-check on each server (true) or a plain health check of /_baton/health. */
  haproxy?: { agentCheck: boolean } | false;
}

function cliRunner(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs: number; onStdout?: (s: string) => void }): { proc: ChildProcess; done: Promise<CliResult>; stdout: () => string } {
  // Own process group: a test's signal reaches only the CLI, and cleanup can end the group.
  const c = spawn(process.execPath, [BATON, ...args], { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  c.stdout!.on('data', (d) => {
    stdout += d;
    opts.onStdout?.(String(d));
  });
  c.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<CliResult>((resolve, reject) => {
    const t = setTimeout(() => {
      try {
        process.kill(-c.pid!, 'SIGKILL');
      } catch {
        // gone
      }
      reject(new Error(`baton ${args.join(' ')} did not finish within ${opts.timeoutMs} ms\n${stdout}\n${stderr}`));
    }, opts.timeoutMs);
    // 'close', not 'exit': the exit can be seen before the last of stdout is read.
    c.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
  return { proc: c, done, stdout: () => stdout };
}

/**
 * Wait until the sshd just started (its log from `logStart` on) says it listens
 * on address:port and that port answers with an SSH banner. PortInUse when it
 * exits because another process had taken the port.
 */
async function waitForSshd(address: string, port: number, what: string, proc: ChildProcess, log: string, logStart: number): Promise<void> {
  const since = async (): Promise<string> => (await readFile(log, 'utf8').catch(() => '')).slice(logStart);
  await waitUntil(what, async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      const text = await since();
      if (saysPortInUse(text)) throw new PortInUse(`${what}:\n${text}`);
      throw new Error(`${what}: the process exited:\n${text}`);
    }
    // Its own word that it bound the port: a banner alone could come from another sshd that took it.
    if (!(await since()).includes(`Server listening on ${address} port ${port}`)) return false;
    return new Promise<boolean>((resolve) => {
      const s = net.connect(port, address);
      s.setTimeout(1000);
      s.once('data', (d) => {
        s.destroy();
        resolve(String(d).startsWith('SSH-'));
      });
      s.once('error', () => resolve(false));
      s.once('timeout', () => {
        s.destroy();
        resolve(false);
      });
    });
  }, 15_000, 100);
}

function killGroup(proc: ChildProcess | null, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  const gone = new Promise<void>((r) => proc.once('exit', () => r()));
  try {
    process.kill(-proc.pid!, signal);
  } catch {
    return Promise.resolve();
  }
  return settlesWithin(gone, 5000).then(() => {
    if (proc.exitCode === null && proc.signalCode === null) {
      try {
        process.kill(-proc.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
}

export async function createFleet(opts: FleetOptions): Promise<TestFleet> {
  if (opts.hosts > 40) throw new Error('at most 40 test hosts');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'baton-fleet-'));
  const clientDir = path.join(dir, 'operator');
  await mkdir(clientDir, { recursive: true });
  // sshd refuses to start without its privilege separation directory (Debian's init makes it).
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  const key = path.join(clientDir, 'id_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'baton-fleet-test', '-f', key]);
  await writeFile(path.join(clientDir, 'authorized_keys'), await readFile(`${key}.pub`));
  const knownHosts = path.join(clientDir, 'known_hosts');
  const sshConfig = path.join(clientDir, 'ssh_config');
  const stateHome = path.join(clientDir, 'state');
  const controlDir = path.join(clientDir, 'cm');
  await mkdir(controlDir, { recursive: true, mode: 0o700 });
  const node = process.execPath;
  const procs: ChildProcess[] = [];
  const hosts: FleetHost[] = [];
  /** Each host's first host key, as known_hosts gives it. */
  const hostKeys = new Map<FleetHost, string>();
  /** Close the sockets held for daemons that never started. */
  const heldSockets: HeldListeners[] = [];

  for (let i = 1; i <= opts.hosts; i++) {
    const name = `h${i}`;
    const address = `127.0.0.${10 + i}`;
    const hdir = path.join(dir, name);
    await mkdir(hdir, { recursive: true });
    // baton's listeners: sockets bound here, handed to the daemon at its first start.
    const held = new HeldListeners();
    heldSockets.push(held);
    const port = await held.add('public', address);
    const agentPort = await held.add('agent-check', address);
    // sshd takes a number: picked at its first start (startSshd), again if it was taken.
    let sshPort = 0;
    let sshdEverStarted = false;
    const hostKey = path.join(hdir, 'ssh_host_ed25519_key');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', hostKey]);
    const sshdConfig = path.join(hdir, 'sshd_config');
    const writeSshdConfig = (): Promise<void> => writeFile(sshdConfig, [
      `ListenAddress ${address}:${sshPort}`,
      `HostKey ${hostKey}`,
      'PidFile none',
      `AuthorizedKeysFile ${path.join(clientDir, 'authorized_keys')}`,
      'StrictModes no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'PermitRootLogin prohibit-password',
      'AllowStreamLocalForwarding yes',
      'MaxSessions 100',
      'MaxStartups 100',
      'LogLevel INFO',
      '',
    ].join('\n'));
    const sshdLog = path.join(hdir, 'sshd.log');
    const configFile = path.join(hdir, 'baton.yaml');
    const daemonLogFile = path.join(hdir, 'daemon.log');
    const state = path.join(hdir, 'state');
    let sshd: ChildProcess | null = null;
    let daemon: ChildProcess | null = null;
    const seenPids = new Set<number>();
    const batonCommand = `${node} ${BATON}`;

    const cli = (args: string[], timeoutMs = 60_000): Promise<CliResult> =>
      cliRunner([...args, '--config', configFile], { cwd: hdir, timeoutMs }).done;
    const status = async (service?: string): Promise<any> => {
      const r = await cli(['status', ...(service ? [service] : []), '--json'], 10_000);
      if (r.code !== 0) throw new Error(`${name}: baton status failed: ${r.stderr}`);
      const s = JSON.parse(r.stdout);
      for (const svc of s.services) for (const inst of svc.instances) seenPids.add(inst.pid);
      return s;
    };
    const host: FleetHost = {
      name,
      address,
      get sshPort() {
        return sshPort;
      },
      port,
      agentPort,
      dir: hdir,
      configFile,
      batonCommand,
      cli,
      status,
      async writeConfig(services) {
        await writeFile(configFile, [
          `listen: ["${address}:${port}"]`,
          'state_dir: ./state',
          'log_level: debug',
          `agent_check: "${address}:${agentPort}"`,
          'services:',
          services,
          '',
        ].join('\n'));
      },
      async startDaemon() {
        const fd = openSync(daemonLogFile, 'a');
        // The first start is handed the sockets held for it; a restart binds the ports itself.
        const sockets = held.forSpawn();
        try {
          daemon = spawn(node, [...sockets.node, BATON, 'daemon', '--config', configFile], { cwd: hdir, stdio: ['ignore', fd, fd, ...sockets.stdio], env: { ...process.env, ...sockets.env }, detached: true });
        } finally {
          closeSync(fd);
          held.closeHere();
        }
        procs.push(daemon);
        const p = daemon;
        await waitUntil(`${name}'s daemon to answer`, async () => {
          if (p.exitCode !== null) throw new Error(`${name}'s daemon exited:\n${await readFile(daemonLogFile, 'utf8')}`);
          if (!existsSync(path.join(state, 'baton.sock'))) return false;
          return (await cli(['status', '--json'], 10_000)).code === 0;
        }, 60_000, 100);
      },
      async stopDaemon() {
        if (daemon && daemon.exitCode === null) {
          await status().catch(() => {});
          await cli(['shutdown', '--stop-instances'], 15_000).catch(() => {});
          const p = daemon;
          await settlesWithin(new Promise((r) => p.once('exit', r)), 15_000);
          await killGroup(p, 'SIGKILL');
        }
        killInstanceGroups(state, seenPids);
      },
      async killDaemon() {
        await status().catch(() => {});
        await killGroup(daemon, 'SIGKILL');
      },
      async startSshd() {
        const once = async (): Promise<void> => {
          await writeSshdConfig();
          const logStart = existsSync(sshdLog) ? (await readFile(sshdLog, 'utf8')).length : 0;
          const fd = openSync(sshdLog, 'a');
          sshd = spawn(SSHD, ['-D', '-e', '-f', sshdConfig], { stdio: ['ignore', fd, fd], detached: true });
          closeSync(fd);
          procs.push(sshd);
          await waitForSshd(address, sshPort, `${name}'s sshd on ${address}:${sshPort}`, sshd, sshdLog, logStart);
        };
        // Started again (a host back up, a new host key): the port the operator's ssh config and known_hosts name.
        if (sshdEverStarted) return once();
        await startOnFreePorts(`${name}'s sshd`, async () => {
          sshPort = await freePort(address);
          await once();
        });
        sshdEverStarted = true;
      },
      async stopSshd() {
        await killGroup(sshd);
        sshd = null;
      },
      async changeHostKey() {
        await rm(hostKey, { force: true });
        await rm(`${hostKey}.pub`, { force: true });
        await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}-new`, '-f', hostKey]);
        await host.stopSshd();
        await host.startSshd();
      },
      async sshConnections() {
        const log = await readFile(sshdLog, 'utf8').catch(() => '');
        return log.split('\n').filter((l) => l.includes('Accepted publickey')).length;
      },
      daemonLog: () => readFile(daemonLogFile, 'utf8').catch(() => ''),
    };
    await host.writeConfig(opts.services(i));
    hosts.push(host);
    hostKeys.set(host, (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(' ').slice(0, 2).join(' '));
  }
  // sshd's ports are final once each has started: the operator's ssh config and known_hosts name them.
  const writeOperatorSsh = async (): Promise<void> => {
    const sshConfigLines: string[] = [];
    const knownLines: string[] = [];
    for (const h of hosts) {
      sshConfigLines.push(
        `Host ${h.name}`,
        `  HostName ${h.address}`,
        `  Port ${h.sshPort}`,
        '  User root',
        `  IdentityFile ${key}`,
        '  IdentitiesOnly yes',
        `  UserKnownHostsFile ${knownHosts}`,
        '  GlobalKnownHostsFile /dev/null',
        '  StrictHostKeyChecking yes',
        '  UpdateHostKeys no',
        '  LogLevel ERROR',
        '',
      );
      knownLines.push(`[${h.address}]:${h.sshPort} ${hostKeys.get(h)}`);
    }
    await writeFile(sshConfig, sshConfigLines.join('\n'));
    await writeFile(knownHosts, knownLines.join('\n') + '\n');
    await chmod(sshConfig, 0o600);
  };

  let haproxy: ChildProcess | null = null;
  let haproxyInfo: TestFleet['haproxy'] = null;
  const haproxySocket = path.join(dir, 'haproxy.sock');
  const haproxyCommand = (cmd: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = net.connect(haproxySocket);
      let out = '';
      s.on('data', (d) => (out += d));
      s.once('connect', () => s.write(cmd + '\n'));
      s.once('error', reject);
      s.once('close', () => resolve(out));
    });

  const fleetFile = path.join(clientDir, 'fleet.yaml');
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_STATE_HOME: stateHome, BATON_SSH_CONTROL_DIR: controlDir };
  const fleet: TestFleet = {
    dir,
    hosts,
    sshConfig,
    stateHome,
    controlDir,
    get haproxy() {
      return haproxyInfo;
    },
    fleetFile,
    async writeFleetFile(text) {
      await writeFile(fleetFile, text);
      return fleetFile;
    },
    async release(version, files = {}) {
      const rdir = path.join(dir, 'src', version);
      await mkdir(rdir, { recursive: true });
      // The fixture app is imported by absolute path: every test host is this machine, with this checkout's node_modules.
      await writeFile(path.join(rdir, 'server.mjs'), `process.env.APP_VERSION ??= ${JSON.stringify(version)};\nawait import(${JSON.stringify(FIXTURE_APP)});\n`);
      for (const [f, text] of Object.entries(files)) await writeFile(path.join(rdir, f), text);
      return rdir;
    },
    fleet(args, o = {}) {
      return cliRunner(['fleet', ...args, '--fleet', fleetFile], { env: { ...env, ...o.env }, cwd: clientDir, timeoutMs: o.timeoutMs ?? 120_000, onStdout: o.onStdout }).done;
    },
    spawnFleet(args) {
      return cliRunner(['fleet', ...args, '--fleet', fleetFile], { env, cwd: clientDir, timeoutMs: 180_000 });
    },
    haproxyCommand,
    async cleanup() {
      // ssh masters the CLI may have left (a killed CLI): ask each to exit.
      for (const f of existsSync(controlDir) ? readdirSync(controlDir) : []) {
        await run('ssh', ['-F', sshConfig, '-o', `ControlPath=${path.join(controlDir, f)}`, '-O', 'exit', 'h1']).catch(() => {});
      }
      await Promise.all(hosts.map((h) => h.stopDaemon()));
      await killGroup(haproxy);
      await Promise.all(hosts.map((h) => h.stopSshd()));
      for (const p of procs) await killGroup(p, 'SIGKILL');
      for (const h of heldSockets) h.closeHere();
      if (!process.env['BATON_KEEP_TEST_DIRS']) await rm(dir, { recursive: true, force: true });
    },
  };

  try {
    await Promise.all(hosts.map((h) => h.startSshd()));
    await writeOperatorSsh();
    await Promise.all(hosts.map((h) => h.startDaemon()));
    const withHaproxy = opts.haproxy;
    if (withHaproxy) {
      const servers = hosts.map((h) =>
        withHaproxy.agentCheck
          ? `  server ${h.name} ${h.address}:${h.port} weight 100 check inter 200ms agent-check agent-addr ${h.address} agent-port ${h.agentPort} agent-inter 200ms`
          : `  server ${h.name} ${h.address}:${h.port} weight 100 check inter 200ms`,
      );
      const cfgFile = path.join(dir, 'haproxy.cfg');
      const log = path.join(dir, 'haproxy.log');
      // Its listening socket is made here and handed over (`bind fd@3`): the port is held from choice to use.
      // Its own loopback address too: other suites' ports live on 127.0.0.1.
      const listening = net.createServer();
      await new Promise<void>((resolve, reject) => {
        listening.once('error', reject);
        listening.listen(0, '127.0.0.10', () => resolve());
      });
      const port = (listening.address() as net.AddressInfo).port;
      await writeFile(cfgFile, [
        'global',
        `  stats socket ${haproxySocket} mode 600 level admin`,
        '  maxconn 2000',
        'defaults',
        '  mode http',
        '  timeout connect 2s',
        '  timeout client 30s',
        '  timeout server 30s',
        // As an operator would: a GET whose server vanished before answering (a host lost) is retried elsewhere.
        '  option redispatch 1',
        '  retries 2',
        '  retry-on conn-failure empty-response response-timeout',
        'frontend fe',
        '  bind fd@3',
        '  default_backend be_web',
        'backend be_web',
        '  balance roundrobin',
        // With the agent-check, the agent is the host's one voice (a health check of
        // /_baton/health would also turn the drained host DOWN); without, /_baton/health is.
        ...(withHaproxy.agentCheck ? [] : ['  option httpchk GET /_baton/health']),
        ...servers,
        '',
      ].join('\n'));
      const fd = openSync(log, 'a');
      const socketFd = (listening as unknown as { _handle: { fd: number } })._handle.fd;
      let hp: ChildProcess;
      try {
        hp = spawn('haproxy', ['-f', cfgFile, '-db'], { stdio: ['ignore', fd, fd, socketFd], detached: true });
      } finally {
        closeSync(fd);
        // HAProxy holds its copy of the socket now; ours would accept connections too.
        listening.close();
      }
      haproxy = hp;
      procs.push(hp);
      await waitUntil('HAProxy to see every server up', async () => {
        if (hp.exitCode !== null || hp.signalCode !== null) throw new Error(`haproxy exited:\n${await readFile(log, 'utf8')}`);
        if (!existsSync(haproxySocket)) return false;
        const stat = await haproxyCommand('show stat').catch(() => '');
        const rows = stat.split('\n').filter((l) => l.startsWith('be_web,h'));
        return rows.length === hosts.length && rows.every((r) => r.split(',')[17] === 'UP');
      }, 20_000, 100);
      haproxyInfo = { url: `http://127.0.0.10:${port}`, socket: haproxySocket, port, backend: 'be_web' };
    }
  } catch (err) {
    await fleet.cleanup().catch(() => {});
    throw err;
  }
  return fleet;
}

export function fleetServiceYaml(opts: { name?: string; extra?: string; startTimeout?: string } = {}): string {
  return [
    `  ${opts.name ?? 'web'}:`,
    `    command: exec "${process.execPath}" server.mjs`,
    '    instances: 1',
    `    health: { path: /healthz, interval: 200ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 2, start_timeout: ${opts.startTimeout ?? '10s'} }`,
    '    drain_timeout: 5s',
    '    stop_timeout: 3s',
    ...(opts.extra ? opts.extra.split('\n').map((l) => `    ${l}`) : []),
  ].join('\n');
}
