// Which scheme a client used to reach baton, read from its connection.

/** "https" when the connection is TLS (an h1 TLSSocket, or the session socket behind an h2 stream). */
export function schemeOf(socket: object | null | undefined): 'https' | 'http' {
  return (socket as { encrypted?: unknown } | null | undefined)?.encrypted === true ? 'https' : 'http';
}
