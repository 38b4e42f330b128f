// Ports for the programs the tests start, held from their choice to their use.
//
// baton itself never needs a port number chosen ahead: the test binds the
// listening socket (port 0, reading back the port it got) and hands the socket
// to the daemon at spawn as an inherited fd, under the key the daemon's
// listener claims (BATON_LISTEN_FDS, the way `baton upgrade` hands its sockets
// to the next daemon: src/core/listen-fds.ts). No moment exists when the port
// is free for another process to take.
//
// HAProxy takes a socket too (`bind fd@3`, test/helpers/fleet-hosts.ts). sshd,
// pebble and the fixture app take a number and bind it themselves: for them
// the port can only be chosen free and the start retried when the program
// reports that it was taken meanwhile (startOnFreePorts, PortInUse).

import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/**
 * A port that was free a moment ago. Racy by nature (another process may take
 * it before it is used): only for a program that must be given a number, with
 * startOnFreePorts (or withFreePort) around its start.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = await listening(host, 0);
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

function listening(host: string, port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(port, host, () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

/** How sshd, HAProxy, pebble (Go), nginx and node report a bind to a port that is taken. */
export function saysPortInUse(text: string): boolean {
  return /address already in use|EADDRINUSE/i.test(text);
}

/** A program's start failed because a port it was given was taken before it bound it. */
export class PortInUse extends Error {}

/**
 * Start a program that must be given port numbers: `start` picks free ports
 * (freePort), starts the program and throws PortInUse when the program says
 * one was taken; then it runs again with new ports, `attempts` times at most.
 */
export async function startOnFreePorts<T>(what: string, start: (attempt: number) => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start(attempt);
    } catch (err) {
      if (!(err instanceof PortInUse)) throw err;
      if (attempt >= attempts) throw new Error(`${what}: a port it was given was taken before it bound it, on each of ${attempts} attempts; the last time:\n${err.message}`);
    }
  }
}

/** What a baton listener is for: the role in its key (src/core/listen-fds.ts ListenerRole). */
export type BatonListenerRole = 'public' | 'tls' | 'metrics' | 'agent-check' | 'dashboard' | 'control-remote';

interface Held {
  role: BatonListenerRole;
  host: string;
  port: number;
  /** This process's listening socket; null once handed to a daemon (and closed here). */
  server: net.Server | null;
}

/**
 * Listening sockets for one baton daemon, held by the test: bound here when
 * their port is chosen, handed to the daemon at spawn (forSpawn), closed here
 * once the daemon has its own copy (closeHere).
 */
export class HeldListeners {
  readonly #held: Held[] = [];

  /** Bind a socket for the daemon's `role` listener on `host`, on any free port: its port. */
  async add(role: BatonListenerRole, host = '127.0.0.1'): Promise<number> {
    const server = await listening(host, 0);
    // Held, not served: it must not keep the test's process alive.
    server.unref();
    const port = (server.address() as net.AddressInfo).port;
    this.#held.push({ role, host, port, server });
    return port;
  }

  /** Give up the listener on `port` (the daemon will no longer be told about it). */
  drop(port: number): void {
    const i = this.#held.findIndex((h) => h.port === port);
    if (i < 0) return;
    this.#held[i]!.server?.close();
    this.#held.splice(i, 1);
  }

  /** Replace the listener on `port` by one on another free port (same role and host): the new port. */
  async replace(port: number): Promise<number> {
    const old = this.#held.find((h) => h.port === port);
    if (!old) throw new Error(`no held listener on port ${port}`);
    this.drop(port);
    return this.add(old.role, old.host);
  }

  /**
   * The fds to pass to the daemon's spawn as stdio 3, 4, … and the environment
   * that names them: the sockets still held here, with `node` the Node flags
   * that go before bin/baton.js (daemonStart). One handed over before (the
   * daemon starts again after a crash or a stop) is not bound again here: the
   * daemon binds its port itself, as a restarted daemon does, so that a client
   * meanwhile is refused as before rather than queued on a socket no one serves.
   */
  forSpawn(): { node: string[]; stdio: number[]; env: Record<string, string> } {
    const passed = this.#held.filter((h) => h.server !== null);
    const fds: Record<string, number> = {};
    const stdio: number[] = [];
    passed.forEach((h, i) => {
      fds[`${h.role} ${h.host}:${h.port}`] = 3 + i;
      stdio.push(fdOf(h.server!));
    });
    if (stdio.length === 0) return { node: [], stdio, env: {} };
    const start = daemonStart();
    return { node: start.flags, stdio, env: { ...start.env, BATON_LISTEN_FDS: JSON.stringify(fds) } };
  }

  /** Close this process's copies of the sockets: after the spawn, the daemon holds its own. */
  closeHere(): void {
    for (const h of this.#held) {
      h.server?.close();
      h.server = null;
    }
  }
}

/** node's handle of a listening TCP server carries its descriptor (Unix). */
export function fdOf(server: net.Server): number {
  const fd = (server as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('a listening socket without a descriptor: cannot hand it to the daemon');
  return fd;
}

const BATON_JS = path.resolve(import.meta.dirname, '../../bin/baton.js');
let batonJs: string | null = null;

/**
 * What bin/baton.js sets for the daemon before it runs: Node flags and glibc's
 * malloc settings. It sets them by replacing itself (process.execve), which
 * closes inherited sockets, unless the flags are there already: a daemon handed
 * sockets is started with them set, as `baton upgrade` starts its successor, so
 * that it is the same daemon as one started plainly. Read from bin/baton.js,
 * so that the two cannot drift apart.
 */
function daemonStart(): { flags: string[]; env: Record<string, string> } {
  // The file is read once; the environment is looked at on every start (a test may set its own value).
  const text = (batonJs ??= readFileSync(BATON_JS, 'utf8'));
  const constant = (name: string): string => {
    const m = new RegExp(`const ${name} = '([^']+)';`).exec(text);
    if (!m) throw new Error(`${BATON_JS} no longer has \`const ${name} = '…'\`: update daemonStart in test/helpers/ports.ts`);
    return m[1]!;
  };
  const malloc = /const MALLOC = \{([^}]*)\};/.exec(text);
  if (!malloc) throw new Error(`${BATON_JS} no longer has \`const MALLOC = { … }\`: update daemonStart in test/helpers/ports.ts`);
  const env: Record<string, string> = {};
  for (const [, name, value] of malloc[1]!.matchAll(/(\w+): '([^']*)'/g)) {
    // An operator's (here: the test run's) own value wins, as in bin/baton.js.
    if (process.env[name!] !== undefined) continue;
    env[name!] = value!;
    env[`BATON_${name}`] = value!;
  }
  return { flags: [constant('SEMI_SPACE'), constant('EXPOSE_GC')], env };
}
