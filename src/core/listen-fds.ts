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
/** From systemd socket activation, by socketUnitName(). */
let activated = new Map<string, number>();
/** The listeners bound through bindListener and still listening, by key. */
const bound = new Map<string, net.Server>();

/**
 * systemd's name for a listener (FileDescriptorName= of a .socket unit): the
 * key with ':' and ' ' as '_' (LISTEN_FDNAMES is colon-separated), e.g.
 * `public_127.0.0.1_8080`.
 */
export function socketUnitName(key: string): string {
  return key.replace(/[: ]/g, '_');
}

/**
 * Sockets passed by systemd socket activation (sd_listen_fds(3)): fds 3… for
 * this very process (LISTEN_PID), named by FileDescriptorName= as socketUnitName().
 * A crash-restart then finds the kernel still accepting: systemd holds them.
 */
function activatedFds(): Map<string, number> {
  const out = new Map<string, number>();
  const pid = process.env['LISTEN_PID'];
  const n = Number(process.env['LISTEN_FDS']);
  const names = (process.env['LISTEN_FDNAMES'] ?? '').split(':');
  for (const k of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES']) delete process.env[k];
  if (pid !== String(process.pid) || !Number.isInteger(n) || n < 1) return out;
  for (let i = 0; i < n; i++) if (names[i]) out.set(names[i]!, 3 + i);
  return out;
}

/** The fds this process inherited (read once; the variables are removed so that children never see them). */
function inheritedFds(): Map<string, number> {
  if (inherited !== null) return inherited;
  inherited = new Map();
  activated = activatedFds();
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
 * The inherited socket for listener `key`, taken (no one else gets it): a
 * predecessor's first (`baton upgrade`), else systemd's (socket activation).
 */
export function claimInheritedFd(key: string): number | undefined {
  const fds = inheritedFds();
  let fd = fds.get(key);
  fds.delete(key);
  if (fd === undefined) {
    fd = activated.get(socketUnitName(key));
    activated.delete(socketUnitName(key));
  }
  return fd;
}

/**
 * Start `server` listening for `role` on host:port: on the socket inherited
 * from the previous daemon under the same key if there is one, otherwise by
 * binding the address. The server is then offered to the next upgrade.
 */
export async function bindListener(server: net.Server, role: ListenerRole, host: string, port: number): Promise<void> {
  const key = listenerKey(role, host, port);
  const fd = claimInheritedFd(key);
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

/** Listening sockets held without a net.Server (the proxy workers' shared sockets, src/daemon/workers.ts), by key. */
const held = new Map<string, number>();

/** Offer a socket held by fd alone to the next daemon too; returns the call that withdraws it (before it is closed). */
export function holdListener(key: string, fd: number): () => void {
  held.set(key, fd);
  return () => {
    if (held.get(key) === fd) held.delete(key);
  };
}

/** Every listener bound through bindListener (or held) that is still listening, with its fd (for the next daemon). */
export function handoverListeners(): { key: string; fd: number }[] {
  const out: { key: string; fd: number }[] = [...held].map(([key, fd]) => ({ key, fd }));
  for (const [key, server] of bound) {
    // node's handle of a listening TCP server carries its descriptor (Unix).
    const fd = (server as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
    if (server.listening && typeof fd === 'number' && fd >= 0) out.push({ key, fd });
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
  // systemd's sockets that no listener claimed stay open: they are systemd's to close.
  activated.clear();
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
