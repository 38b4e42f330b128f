// Who is at the other end of a client connection, decided once when it is accepted:
// the client's address (the TCP peer's, or the one a PROXY protocol header names),
// the scheme it used, and whether its X-Forwarded-*/Forwarded headers are trusted.

import type net from 'node:net';
import { schemeOf } from './scheme.ts';

export interface ClientConnection {
  /** The client's address, as matched by allow lists and sent in X-Forwarded-For. */
  readonly address: string;
  /** The scheme the client used to reach baton (or the balancer in front, per a PROXY v2 header). */
  readonly proto: 'http' | 'https';
  /** The peer is a trusted proxy: its X-Forwarded-* and Forwarded headers are kept and appended to. */
  readonly trusted: boolean;
}

const kClient = Symbol('baton.client');
type Tagged = net.Socket & { [kClient]?: ClientConnection };

export function setClient(socket: net.Socket, client: ClientConnection): void {
  (socket as Tagged)[kClient] = client;
}

/**
 * The connection's client. A socket not identified at accept (TLS listeners, whose
 * request sockets are the TLS layer's; the preview listener): its peer, untrusted,
 * with the scheme its socket says.
 */
export function clientOf(socket: net.Socket): ClientConnection {
  return (socket as Tagged)[kClient] ?? { address: socket.remoteAddress ?? '', proto: schemeOf(socket), trusted: false };
}

/** The client's address (allow lists, canary networks, client_address stickiness). */
export function clientAddress(socket: net.Socket): string | undefined {
  return (socket as Tagged)[kClient]?.address ?? socket.remoteAddress;
}
