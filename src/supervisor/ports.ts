// Picking free TCP ports for new instances.

import { createServer } from 'node:net';
import { BatonError } from '../core/errors.ts';

/** Ports handed out recently: an instance may not have bound its port yet when the next one is picked. */
const RECENT_LIMIT = 1000;
const recent = new Set<number>();
const MAX_ATTEMPTS = 50;

function bindEphemeral(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A free TCP port on `host` (127.0.0.1 by default) that this process has not handed out among the last 1000. */
export async function allocatePort(host = '127.0.0.1'): Promise<number> {
  for (let i = 0; i < MAX_ATTEMPTS; i++) {
    const port = await bindEphemeral(host);
    if (port === 0 || recent.has(port)) continue;
    recent.add(port);
    // A Set iterates in insertion order: the first entry is the oldest.
    if (recent.size > RECENT_LIMIT) recent.delete(recent.values().next().value as number);
    return port;
  }
  throw new BatonError('INTERNAL', `no free port found on ${host} after ${MAX_ATTEMPTS} attempts`);
}
