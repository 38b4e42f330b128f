// The cap on open connections per client address on the plain listeners
// (proxy.max_connections_per_client; the TLS listeners have their own, counted
// at the TCP accept, in listeners.ts). The address is the client's as baton
// decided it at accept (client.ts): the TCP peer, or the one a trusted
// proxy's PROXY protocol header names. A trusted proxy's own connections are
// not capped: each carries many clients, and their addresses only come per
// request (X-Forwarded-For), too late to refuse a connection.

import type net from 'node:net';
import { rawErrorResponse } from './error-page.ts';
import { LINGER_MS } from './limits.ts';

const REFUSED = rawErrorResponse('too_many_connections');

export class ClientConnections {
  #max: number;
  readonly #open = new Map<string, number>();
  /** Connections refused since the proxy started (the cap was reached for their address). */
  refused = 0;

  constructor(max: number) {
    this.#max = max;
  }

  /** A new cap (a reload): connections accepted from now on are judged by it; open ones stay. */
  setMax(max: number): void {
    this.#max = max;
  }

  /** Connections open now from `address` (counted ones only). */
  openFrom(address: string): number {
    return this.#open.get(address) ?? 0;
  }

  /**
   * Count `socket` for `address`, or refuse it (false) when the address
   * already holds the cap: it gets a 503 naming the limit and is closed.
   */
  admit(socket: net.Socket, address: string): boolean {
    const n = (this.#open.get(address) ?? 0) + 1;
    if (n > this.#max) {
      this.refused++;
      refuse(socket);
      return false;
    }
    this.#open.set(address, n);
    socket.once('close', () => {
      const left = (this.#open.get(address) ?? 1) - 1;
      if (left <= 0) this.#open.delete(address);
      else this.#open.set(address, left);
    });
    return true;
  }
}

function drop(): void {}

/**
 * Answer 503 before any request is read, and close: what the client sends
 * meanwhile is read and dropped (so the kernel does not reset the connection
 * under the answer), for LINGER_MS at most.
 */
function refuse(socket: net.Socket): void {
  socket.on('error', drop);
  socket.on('data', drop);
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  socket.once('close', () => clearTimeout(timer));
  socket.once('end', () => socket.destroy());
  socket.end(REFUSED);
}
