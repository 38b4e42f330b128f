// Listen addresses of the config file: "host:port" or "[ipv6]:port".

import { isIPv6 } from 'node:net';
import { isHostName } from './hostname.ts';
import type { ListenerConfig } from './types.ts';

/** The parsed address, or a message saying what is wrong with it. */
export function parseListenAddress(text: string, opts: { allowPortZero?: boolean } = {}): ListenerConfig | string {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  if (!m) return 'expected "host:port" such as "127.0.0.1:8080" or "[::1]:8080"';
  const [, v6, name, portText] = m;
  const port = Number(portText);
  if (port === 0 && opts.allowPortZero) {
    // "any free port": the bound port is reported by whoever listens.
  } else if (port < 1 || port > 65535) {
    return `port ${portText} is out of range, expected 1 to 65535${opts.allowPortZero ? ' (or 0: any free port)' : ''}`;
  }
  if (v6 !== undefined) {
    if (!isIPv6(v6)) return `"${v6}" is not an IPv6 address`;
    return { host: v6.toLowerCase(), port };
  }
  const host = (name ?? '').toLowerCase();
  if (!isHostName(host)) return `"${name ?? ''}" is not a host name or IPv4 address`;
  return { host, port };
}

/** True if two listeners cannot both be bound: same port on the same or a wildcard address. */
export function listenersClash(a: ListenerConfig, b: ListenerConfig): boolean {
  if (a.port !== b.port) return false;
  const wildcard = (h: string): boolean => h === '0.0.0.0' || h === '::';
  return a.host === b.host || wildcard(a.host) || wildcard(b.host);
}
