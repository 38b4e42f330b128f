// Client-address matching against CIDR lists (IPv4, IPv6, IPv4-mapped IPv6), parsed once per snapshot.

import net from 'node:net';
import { BatonError } from '../core/errors.ts';

export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** Parse "10.0.0.0/8", "2001:db8::/32" or a bare address (a /32 or /128); null when invalid. */
export function parseCidr(text: string): Cidr | null {
  const s = text.trim();
  const slash = s.indexOf('/');
  const address = slash < 0 ? s : s.slice(0, slash);
  const v = net.isIP(address);
  if (v === 0) return null;
  const max = v === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return null;
    prefix = Number(p);
    if (prefix > max) return null;
  }
  return { address, prefix, family: v === 4 ? 'ipv4' : 'ipv6' };
}

/** A set of networks; `matches` takes a socket's remoteAddress as Node reports it. */
/** Addresses remembered per matcher (a pure cache of check(); bounded so that many clients cannot grow it). */
const MEMO_LIMIT = 4096;

export class AddressMatcher {
  readonly #list = new net.BlockList();
  // BlockList.check costs ~1 µs; a Map hit a few tens of ns.
  readonly #memo = new Map<string, boolean>();
  readonly cidrs: readonly string[];

  /** Throws CONFIG_INVALID naming `what` for an entry that is not an address or a network. */
  constructor(cidrs: readonly string[], what: string) {
    for (const c of cidrs) {
      const parsed = parseCidr(c);
      if (parsed === null) throw new BatonError('CONFIG_INVALID', `${what}: "${c}" is not an IP address or network (CIDR)`);
      this.#list.addSubnet(parsed.address, parsed.prefix, parsed.family);
    }
    this.cidrs = [...cidrs];
  }

  /**
   * Whether the client address is in one of the networks. BlockList matches an
   * IPv4-mapped address (::ffff:a.b.c.d, what a dual-stack listener reports
   * for IPv4 clients) against IPv4 networks too; a zone suffix (%eth0) is ignored.
   */
  matches(address: string | undefined): boolean {
    if (address === undefined) return false;
    const known = this.#memo.get(address);
    if (known !== undefined) return known;
    const found = this.#check(address);
    if (this.#memo.size >= MEMO_LIMIT) this.#memo.clear();
    this.#memo.set(address, found);
    return found;
  }

  #check(address: string): boolean {
    let a = address;
    const zone = a.indexOf('%');
    if (zone >= 0) a = a.slice(0, zone);
    try {
      return this.#list.check(a, a.includes(':') ? 'ipv6' : 'ipv4');
    } catch {
      return false;
    }
  }
}
