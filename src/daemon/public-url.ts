// The address visitors use to reach a service, for the links baton hands out
// (`baton beta`). A configured `public_url` wins (baton behind a balancer or a
// CDN knows no better); otherwise HTTPS when the daemon has TLS listeners,
// the service's first host name, and the listener's port unless it is the
// scheme's default.

import type { ListenerConfig } from '../config/types.ts';

export function publicBase(o: { publicUrl: string | null; hosts: readonly string[]; plain: readonly ListenerConfig[]; tls: readonly ListenerConfig[] }): string {
  if (o.publicUrl) return o.publicUrl.replace(/\/+$/, '');
  const secure = o.tls.length > 0;
  const listener = (secure ? o.tls : o.plain)[0];
  const scheme = secure ? 'https' : 'http';
  const port = listener?.port ?? (secure ? 443 : 80);
  const defaultPort = secure ? 443 : 80;
  // A wildcard listener is not an address to visit: name the loopback instead.
  const address = (h: string): string => (h === '0.0.0.0' || h === '::' ? 'localhost' : h.includes(':') ? `[${h}]` : h);
  const host = o.hosts[0] ?? (listener ? address(listener.host) : 'localhost');
  return `${scheme}://${host}${port === defaultPort ? '' : `:${port}`}`;
}
