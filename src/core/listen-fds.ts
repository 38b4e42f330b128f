// Listening sockets that outlive the process that opened them. Every TCP
// listener of the daemon is bound here, under a key naming what it is for, so
// that `baton upgrade` can pass them all to the next daemon as inherited file
// descriptors (src/daemon/upgrade.ts), and the next daemon takes each one
// over with listen({ fd }) instead of binding the port again: one kernel
// socket, one accept queue, no moment when the port is closed.
//
// Process-wide on purpose: inherited fds are a property of the process (its
// environment and descriptor table), not of any one object in it.

import { closeSync } from 'node:fs';
import type net from 'node:net';

/** The environment variable with the inherited listeners: JSON {key: fd}. */
export const LISTEN_FDS_ENV = 'BATON_LISTEN_FDS';

/** What a listener is for: with its configured address, the key it is passed under. */
export type ListenerRole = 'public' | 'tls' | 'metrics' | 'agent-check' | 'dashboard' | 'control-remote';

export function listenerKey(role: ListenerRole, host: string, port: number): string {
  return `${role} ${host}:${port}`;
}

let inherited: Map<string, number> | null = null;
/** The listeners bound through bindListener and still listening, by key. */
const bound = new Map<string, net.Server>();

/** The fds this process inherited (read once; the variable is removed so that children never see it). */
function inheritedFds(): Map<string, number> {
  if (inherited !== null) return inherited;
  inherited = new Map();
  const raw = process.env[LISTEN_FDS_ENV];
  delete process.env[LISTEN_FDS_ENV];
  if (raw === undefined || raw === '') return inherited;
  try {
    const parsed = JSON.parse(raw) as unknown;
    if (parsed !== null && typeof parsed === 'object') {
      for (const [k, v] of Object.entries(parsed)) if (Number.isInteger(v) && (v as number) > 2) inherited.set(k, v as number);
    }
  } catch {
    // malformed: bind every port afresh (and fail loudly there if the port is held)
  }
  return inherited;
}

/**
 * Start `server` listening for `role` on host:port: on the socket inherited
 * from the previous daemon under the same key if there is one, otherwise by
 * binding the address. The server is then offered to the next upgrade.
 */
export async function bindListener(server: net.Server, role: ListenerRole, host: string, port: number): Promise<void> {
  const key = listenerKey(role, host, port);
  const fds = inheritedFds();
  const fd = fds.get(key);
  fds.delete(key);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    if (fd === undefined) server.listen(port, host, done);
    else server.listen({ fd }, done);
  });
  bound.set(key, server);
  server.once('close', () => {
    if (bound.get(key) === server) bound.delete(key);
  });
}

/** Every listener bound through bindListener that is still listening, with its fd (for the next daemon). */
export function handoverListeners(): { key: string; fd: number; server: net.Server }[] {
  const out: { key: string; fd: number; server: net.Server }[] = [];
  for (const [key, server] of bound) {
    // node's handle of a listening TCP server carries its descriptor (Unix).
    const fd = (server as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
    if (server.listening && typeof fd === 'number' && fd >= 0) out.push({ key, fd, server });
  }
  return out;
}

/**
 * Close the inherited fds no listener claimed (the new config dropped or
 * moved that listener): returns their keys.
 */
export function closeUnclaimedFds(): string[] {
  const fds = inheritedFds();
  const keys = [...fds.keys()];
  for (const fd of fds.values()) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
  }
  fds.clear();
  return keys;
}
