// The canary split: per request, stable or canary pool; and target choice within the pools.

import type { IncomingMessage } from 'node:http';
import { pick, type Candidate } from './balancer.ts';
import { BUCKETS, cookieValue, keyBucket, setCookieHeader } from './sticky.ts';
import { KEY_CLIENT_ADDRESS, KEY_HEADER, type CanaryRoute, type ServiceRoute } from './snapshot.ts';
import type { TargetState } from './target.ts';
import { clientAddress } from './client.ts';

/** What the split reads of a request: its headers as node:http gives them (lowercase names, repeats joined) and its connection. */
export type SplitRequest = Pick<IncomingMessage, 'headers' | 'socket'>;

/** canaryBucket(): an override rule matched. */
export const OVERRIDE = -1;

/** The address a client-address key hashes: IPv4 clients of a dual-stack listener without the ::ffff: prefix. */
function clientKey(address: string | undefined): string {
  if (address === undefined) return '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/**
 * Where a request goes while a canary is active, encoded in one number (no allocation):
 *   OVERRIDE (-1)          an override rule matched (header, valid beta cookie, network): canary;
 *   0 ≤ b < BUCKETS        bucket b from a valid bucket cookie;
 *   BUCKETS + b            bucket b computed now (sticky.key): the response sets the cookie.
 */
export function canaryBucket(c: CanaryRoute, req: SplitRequest): number {
  const headers = req.headers;
  if (c.overrideHeader !== null && headers[c.overrideHeader] === c.overrideValue) return OVERRIDE;
  const cookies = headers.cookie;
  if (cookies !== undefined && c.betaCookie !== null) {
    const v = cookieValue(cookies, c.betaCookie);
    if (v !== null && c.signer.betaCookieValid(v, Date.now())) return OVERRIDE;
  }
  if (c.networks !== null && c.networks.matches(clientAddress(req.socket))) return OVERRIDE;
  if (cookies !== undefined) {
    const v = cookieValue(cookies, c.cookie);
    if (v !== null) {
      const b = c.signer.bucketOf(v);
      if (b >= 0) return b;
    }
  }
  if (c.keyKind === KEY_HEADER) {
    const v = headers[c.keyHeader];
    if (typeof v === 'string' && v !== '') return BUCKETS + keyBucket(c.seed, v);
  } else if (c.keyKind === KEY_CLIENT_ADDRESS) {
    return BUCKETS + keyBucket(c.seed, clientKey(clientAddress(req.socket)));
  }
  // Random, and a header key whose header is absent.
  return BUCKETS + Math.floor(Math.random() * BUCKETS);
}

/** Is the encoded decision the canary pool? */
export function isCanary(c: CanaryRoute, code: number): boolean {
  return code < BUCKETS ? code < c.threshold : code - BUCKETS < c.threshold;
}

/** The Set-Cookie a decision needs (a bucket computed now), or null. */
export function bucketSetCookie(c: CanaryRoute, code: number): string | null {
  return code < BUCKETS ? null : setCookieHeader(c.cookie, c.signer.bucketCookie(code - BUCKETS));
}

/**
 * A target of the chosen pool, else of the other one, skipping `excluded`
 * (retries: the chosen pool first, then the other). Without a canary: the stable pool.
 */
export function pickTarget(route: ServiceRoute, canary: boolean, excluded: readonly Candidate[] | null): TargetState | undefined {
  const c = route.canary;
  if (c === null) return pick(route.policy, route.targets, route.rotation, excluded);
  if (canary) return pick(route.policy, c.targets, c.rotation, excluded) ?? pick(route.policy, route.targets, route.rotation, excluded);
  return pick(route.policy, route.targets, route.rotation, excluded) ?? pick(route.policy, c.targets, c.rotation, excluded);
}

/** Outcome of the first choice of a request: the target (if any), the pool and the cookie to set. */
export interface Choice {
  target: TargetState | undefined;
  canary: boolean;
  setCookie: string | null;
}

/** The first target of a request of a service with a canary: split, overrides, fallback; counted. */
export function chooseWithCanary(route: ServiceRoute, c: CanaryRoute, req: SplitRequest): Choice {
  const code = canaryBucket(c, req);
  const canary = code === OVERRIDE || isCanary(c, code);
  const routing = route.shared.routing;
  let setCookie: string | null = null;
  if (code >= BUCKETS) setCookie = bucketSetCookie(c, code);
  if (canary) {
    routing.canary++;
    if (code === OVERRIDE) routing.overrides++;
  } else {
    routing.stable++;
  }
  const first = canary ? pick(route.policy, c.targets, c.rotation, null) : pick(route.policy, route.targets, route.rotation, null);
  if (first !== undefined) return { target: first, canary, setCookie };
  const other = canary ? pick(route.policy, route.targets, route.rotation, null) : pick(route.policy, c.targets, c.rotation, null);
  if (other !== undefined) routing.fallbacks++;
  return { target: other, canary, setCookie };
}
