// Signed values for the canary split: bucket cookies, beta cookies and one-time beta link tokens.
//
// Everything is signed with HMAC-SHA256 under the canary's sticky.secret, with a
// distinct prefix per kind of value so one kind can never pass for another:
//   bucket cookie  "<bucket>.<sig>"            sig = HMAC("bucket:<bucket>")          (16 chars base64url)
//   beta cookie    "<id>.<exp36>.<sig>"        sig = HMAC("beta:<id>.<exp36>")        exp36: expiry, seconds, base 36
//   beta token     "<id>.<exp36>.<sig>"        sig = HMAC("token:<id>.<exp36>")       exp36: expiry, ms, base 36
// A bucket's signature is computed once per secret and kept (10,000 buckets at
// most), so checking a cookie on the hot path is a string comparison.

import { Buffer } from 'node:buffer';
import { createHmac, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { BatonError } from '../core/errors.ts';

export const BUCKETS = 10_000;
/** Max-Age of baton's cookies: 30 days. */
export const COOKIE_MAX_AGE_S = 2_592_000;
const BUCKET_SIG_LEN = 16;
const SIG_LEN = 22;
const BETA_MEMO_LIMIT = 4096;
const SIGNER_LIMIT = 32;

/** Compare two strings in time independent of where they differ. */
function sameString(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

export interface BetaId {
  id: string;
  /** Expiry, ms since the epoch. */
  expiresAt: number;
}

export class Signer {
  readonly #key: KeyObject;
  readonly #bucketSigs: (string | undefined)[] = new Array<string | undefined>(BUCKETS);
  /** Beta cookie values already verified → their expiry (ms). */
  readonly #betaMemo = new Map<string, number>();

  constructor(secret: string) {
    this.#key = createSecretKey(Buffer.from(secret, 'utf8'));
  }

  #sign(data: string, len: number): string {
    return createHmac('sha256', this.#key).update(data).digest('base64url').slice(0, len);
  }

  bucketSig(bucket: number): string {
    let s = this.#bucketSigs[bucket];
    if (s === undefined) this.#bucketSigs[bucket] = s = this.#sign(`bucket:${bucket}`, BUCKET_SIG_LEN);
    return s;
  }

  /** The bucket of a cookie value, or -1 when it is garbled, out of range or not signed by this secret. */
  bucketOf(value: string): number {
    const dot = value.indexOf('.');
    if (dot < 1 || dot > 4 || value.length !== dot + 1 + BUCKET_SIG_LEN) return -1;
    let b = 0;
    for (let i = 0; i < dot; i++) {
      const d = value.charCodeAt(i) - 48;
      if (d < 0 || d > 9) return -1;
      b = b * 10 + d;
    }
    // One spelling per bucket: no leading zeros.
    if (dot > 1 && value.charCodeAt(0) === 48) return -1;
    return sameString(value.slice(dot + 1), this.bucketSig(b)) ? b : -1;
  }

  bucketCookie(bucket: number): string {
    return `${bucket}.${this.bucketSig(bucket)}`;
  }

  /** A beta cookie value for `id`, valid until expiresAt (ms). */
  betaCookie(id: string, expiresAt: number): string {
    const exp = Math.floor(expiresAt / 1000).toString(36);
    return `${id}.${exp}.${this.#sign(`beta:${id}.${exp}`, SIG_LEN)}`;
  }

  betaCookieValid(value: string, now: number): boolean {
    const known = this.#betaMemo.get(value);
    if (known !== undefined) return known > now;
    const parsed = this.#parse(value, 'beta', 1000);
    if (parsed === null) return false;
    if (this.#betaMemo.size >= BETA_MEMO_LIMIT) this.#betaMemo.clear();
    this.#betaMemo.set(value, parsed.expiresAt);
    return parsed.expiresAt > now;
  }

  token(ttlMs: number, now: number): string {
    const id = randomBytes(12).toString('base64url');
    const exp = Math.floor(now + ttlMs).toString(36);
    return `${id}.${exp}.${this.#sign(`token:${id}.${exp}`, SIG_LEN)}`;
  }

  /** The id and expiry of a token signed by this secret (expired or not), or null. */
  tokenOf(token: string): BetaId | null {
    return this.#parse(token, 'token', 1);
  }

  #parse(value: string, kind: string, unitMs: number): BetaId | null {
    const a = value.indexOf('.');
    const b = a < 0 ? -1 : value.indexOf('.', a + 1);
    if (a < 1 || b < a + 2 || value.length !== b + 1 + SIG_LEN || a > 64) return null;
    const id = value.slice(0, a);
    const exp = value.slice(a + 1, b);
    if (!/^[A-Za-z0-9_-]+$/.test(id) || !/^[0-9a-z]{1,12}$/.test(exp)) return null;
    if (!sameString(value.slice(b + 1), this.#sign(`${kind}:${id}.${exp}`, SIG_LEN))) return null;
    return { id, expiresAt: parseInt(exp, 36) * unitMs };
  }
}

const signers = new Map<string, Signer>();

/** The signer of a secret (cached: its bucket signatures are computed once). */
export function signerFor(secret: string): Signer {
  let s = signers.get(secret);
  if (s === undefined) {
    if (signers.size >= SIGNER_LIMIT) signers.delete(signers.keys().next().value!);
    signers.set(secret, (s = new Signer(secret)));
  }
  return s;
}

/**
 * A one-time beta link token: give testers `https://<site>/_baton/beta?token=<token>`.
 * Opening it (once, before `ttlMs` has passed) sets the service's signed beta
 * cookie, which sends the tester to the canary whatever its weight.
 */
export function makeBetaToken(secret: string, ttlMs: number, now: number = Date.now()): string {
  if (secret === '') throw new BatonError('BAD_REQUEST', 'a beta token needs a non-empty secret');
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new BatonError('BAD_REQUEST', `a beta token needs a positive lifetime (got ${ttlMs} ms)`);
  return signerFor(secret).token(ttlMs, now);
}

/** Value of cookie `name` in a Cookie header ("a=1; b=2"), or null. The first one wins. */
export function cookieValue(header: string, name: string): string | null {
  const n = header.length;
  let i = 0;
  while (i < n) {
    while (i < n && header.charCodeAt(i) === 32) i++;
    let end = header.indexOf(';', i);
    if (end < 0) end = n;
    if (header.charCodeAt(i + name.length) === 61 /* = */ && header.startsWith(name, i)) {
      let v = header.slice(i + name.length + 1, end).trim();
      if (v.length >= 2 && v.charCodeAt(0) === 34 && v.charCodeAt(v.length - 1) === 34) v = v.slice(1, -1);
      return v;
    }
    i = end + 1;
  }
  return null;
}

/** Seed for keyHash: FNV-1a over the secret, so each secret sorts visitors differently. */
export function hashSeed(secret: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < secret.length; i++) h = Math.imul(h ^ secret.charCodeAt(i), 0x01000193);
  return Math.imul(h ^ 0, 0x01000193) >>> 0;
}

/** A bucket in [0, BUCKETS) from a string: FNV-1a (seeded), then murmur3's finaliser for the low digits. */
export function keyBucket(seed: number, key: string): number {
  let h = seed;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) % BUCKETS;
}

/** A Set-Cookie value for one of baton's cookies. */
export function setCookieHeader(name: string, value: string): string {
  return `${name}=${value}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${COOKIE_MAX_AGE_S}`;
}

/** A cookie name is an RFC 6265 token. */
export function isCookieName(name: string): boolean {
  return /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name);
}
