// The rules of request header forwarding written out plainly (RFC 9110 7.6.1,
// RFC 7239, the trust rule of X-Forwarded-*), as a model the property tests
// compare src/proxy/headers.ts with, alone (test/unit/prop-headers.test.ts)
// and through the real proxy (test/integration/prop-forwarding.test.ts).

import type { ClientConnection } from '../../src/proxy/client.ts';

export const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'];
export const FORWARDING = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded'];
/** Connection options that name no field. */
export const OPTIONS_NOT_NOMINATING = ['close', 'keep-alive', 'upgrade'];

/** What the instance should get, from the rules, as [name, value] pairs (names as sent), in order. */
export function forwardedModel(raw: readonly string[], facts: ClientConnection, keepUpgrade: boolean): [string, string][] {
  const nominated = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'connection') continue;
    for (const part of raw[i + 1]!.split(',')) {
      const token = part.trim().toLowerCase();
      if (token !== '' && !OPTIONS_NOT_NOMINATING.includes(token)) nominated.add(token);
    }
  }
  const out: [string, string][] = [];
  const xff: string[] = [];
  const fwd: string[] = [];
  let xfp: string | null = null;
  let xfh: string | null = null;
  let host: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (lower === 'host') {
      // End to end, and what the request was routed by: kept whatever Connection says. (Two Host
      // lines are kept as sent: the upstream client refuses them, and the client gets a 400, as RFC 9112 3.2 asks.)
      host ??= value;
      out.push([name, value]);
      continue;
    }
    if (HOP_BY_HOP.includes(lower)) {
      if (keepUpgrade && lower === 'upgrade') out.push([name, value]);
      continue;
    }
    if (nominated.has(lower) || lower === 'expect') continue;
    if (FORWARDING.includes(lower)) {
      if (!facts.trusted) continue;
      if (lower === 'x-forwarded-for') xff.push(value);
      if (lower === 'forwarded') fwd.push(value);
      if (lower === 'x-forwarded-proto') xfp ??= value;
      if (lower === 'x-forwarded-host') xfh ??= value;
      continue;
    }
    out.push([name, value]);
  }
  if (keepUpgrade) out.push(['connection', 'upgrade']);
  out.push(['x-forwarded-for', [...xff, facts.address].join(', ')]);
  out.push(['x-forwarded-proto', xfp ?? facts.proto]);
  if ((xfh ?? host) !== null) out.push(['x-forwarded-host', (xfh ?? host)!]);
  const node = facts.address.includes(':') ? `"[${facts.address}]"` : facts.address;
  const element = host === null ? `for=${node};proto=${facts.proto}` : `for=${node};host="${host.replace(/[\\"]/g, '\\$&')}";proto=${facts.proto}`;
  out.push(['forwarded', [...fwd, element].join(', ')]);
  return out;
}

export function pairs(flat: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}
