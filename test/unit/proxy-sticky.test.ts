import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { BUCKETS, Signer, cookieValue, hashSeed, keyBucket, makeBetaToken, signerFor } from '../../src/proxy/sticky.ts';
import { AddressMatcher, parseCidr } from '../../src/proxy/cidr.ts';
import { buildSnapshot, type CanaryRoute, type ServiceShared } from '../../src/proxy/snapshot.ts';
import { canaryBucket, isCanary, OVERRIDE } from '../../src/proxy/split.ts';
import type { CanarySpec, ServiceRouteSpec } from '../../src/proxy/types.ts';
import { PauseQueue } from '../../src/proxy/pause-queue.ts';
import { Admission } from '../../src/proxy/admission.ts';
import { ReleaseStats } from '../../src/proxy/metrics.ts';
import { BatonError } from '../../src/core/errors.ts';

const UP = { keepAliveTimeoutMs: 1000, connectTimeoutMs: 1000, responseTimeoutMs: 1000 };

function canarySpec(extra: Partial<CanarySpec> = {}): CanarySpec {
  return {
    release: 'r2',
    targets: [],
    weight: 10,
    sticky: { cookie: 'bb', secret: 's3cret', key: { kind: 'random' } },
    overrides: { header: null, betaCookie: null, networks: [] },
    ...extra,
  };
}

function shared(): ServiceShared {
  return {
    counters: { requests: 0, failed: 0, appErrors: 0, retries: 0, websockets: 0 },
    routing: {} as ServiceShared['routing'],
    rotation: { next: 0 },
    canaryRotation: { next: 0 },
    queue: new PauseQueue(),
    admission: new Admission(),
    noRelease: new ReleaseStats('s', '-'),
  };
}

/** The prepared canary of a one-service spec (no targets: no pools are made). */
function canaryRoute(c: CanarySpec, extra: Partial<ServiceRouteSpec> = {}): CanaryRoute {
  const spec: ServiceRouteSpec = { name: 's', hosts: [], isDefault: true, balance: 'round_robin', upstream: UP, targets: [], canary: c, ...extra };
  const snap = buildSnapshot({ services: [spec] }, { target: () => assert.fail('no targets'), shared });
  return snap.services.get('s')!.canary!;
}

function fakeReq(headers: Record<string, string>, remoteAddress = '127.0.0.1'): IncomingMessage {
  return { headers, socket: { remoteAddress } } as unknown as IncomingMessage;
}

test('cookieValue finds a cookie among others, first one wins, quotes removed', () => {
  assert.equal(cookieValue('a=1; bb=2; c=3', 'bb'), '2');
  assert.equal(cookieValue('bb=x;bb=y', 'bb'), 'x');
  assert.equal(cookieValue('xbb=1; bbx=2', 'bb'), null);
  assert.equal(cookieValue('bb="q"', 'bb'), 'q');
  assert.equal(cookieValue('', 'bb'), null);
  assert.equal(cookieValue('bb=', 'bb'), '');
});

test('bucket cookies: round trip; forged, garbled, out of range or foreign-secret values are refused', () => {
  const s = new Signer('k1');
  for (const b of [0, 1, 999, 1000, 9999]) assert.equal(s.bucketOf(s.bucketCookie(b)), b);
  const good = s.bucketCookie(42);
  const sig = good.split('.')[1]!;
  assert.equal(s.bucketOf(`43.${sig}`), -1, 'signature of another bucket');
  assert.equal(s.bucketOf(`042.${sig}`), -1, 'leading zero');
  const flipped = sig.slice(0, -1) + (sig.endsWith('A') ? 'B' : 'A');
  assert.equal(s.bucketOf(`42.${flipped}`), -1, 'one character changed');
  assert.equal(s.bucketOf(`42.${'A'.repeat(sig.length)}`), -1);
  assert.equal(s.bucketOf(`10000.${new Signer('k1').bucketSig(1000)}`), -1, 'out of range');
  for (const bad of ['', '42', '42.', '.abc', 'x.y', '-1.' + sig, '1e3.' + sig, `42.${sig}x`]) assert.equal(s.bucketOf(bad), -1, bad);
  assert.equal(new Signer('k2').bucketOf(good), -1, 'another secret');
});

test('beta tokens: valid until expiry, tamper-proof; beta cookies likewise', () => {
  const now = 1_800_000_000_000;
  const token = makeBetaToken('sec', 60_000, now);
  const t = signerFor('sec').tokenOf(token)!;
  assert.equal(t.expiresAt, now + 60_000);
  assert.match(t.id, /^[A-Za-z0-9_-]{16}$/);
  assert.equal(signerFor('other').tokenOf(token), null);
  assert.equal(signerFor('sec').tokenOf(token.replace(/\.([0-9a-z]+)\./, (_m, e: string) => `.${(parseInt(e, 36) + 1).toString(36)}.`)), null, 'expiry changed');
  assert.notEqual(makeBetaToken('sec', 60_000, now), token, 'ids are random');
  assert.throws(() => makeBetaToken('', 1000), BatonError);
  assert.throws(() => makeBetaToken('sec', 0), BatonError);

  const s = new Signer('sec');
  const cookie = s.betaCookie('abc', now + 1000);
  assert.equal(s.betaCookieValid(cookie, now), true);
  assert.equal(s.betaCookieValid(cookie, now + 5000), false, 'expired');
  assert.equal(new Signer('x').betaCookieValid(cookie, now), false);
  // A token is not a beta cookie (different signing prefix), nor the reverse.
  assert.equal(s.betaCookieValid(token, now), false);
  assert.equal(s.tokenOf(cookie), null);
});

test('key hash: stable, seeded by the secret, spread evenly over the buckets', () => {
  const seed = hashSeed('a');
  assert.equal(keyBucket(seed, 'user-1'), keyBucket(seed, 'user-1'));
  let differ = 0;
  const tenths = new Array<number>(10).fill(0);
  const n = 100_000;
  for (let i = 0; i < n; i++) {
    const b = keyBucket(seed, `user-${i}`);
    assert.ok(b >= 0 && b < BUCKETS);
    tenths[Math.floor(b / 1000)]!++;
    if (i < 1000 && b !== keyBucket(hashSeed('b'), `user-${i}`)) differ++;
  }
  for (const c of tenths) assert.ok(Math.abs(c / n - 0.1) < 0.01, `tenths ${tenths.join(',')}`);
  assert.ok(differ > 990, 'another secret sorts visitors differently');
});

test('canaryBucket: overrides first, then a valid cookie, then the key', () => {
  const c = canaryRoute(
    canarySpec({
      weight: 10,
      sticky: { cookie: 'bb', secret: 'k', key: { kind: 'header', header: 'X-User' } },
      overrides: { header: { name: 'X-Release', value: 'canary' }, betaCookie: 'beta', networks: ['10.0.0.0/8', '2001:db8::/32'] },
    }),
  );
  const s = signerFor('k');
  assert.equal(canaryBucket(c, fakeReq({ 'x-release': 'canary' })), OVERRIDE);
  assert.notEqual(canaryBucket(c, fakeReq({ 'x-release': 'Canary' })), OVERRIDE);
  assert.equal(canaryBucket(c, fakeReq({ cookie: `beta=${s.betaCookie('id', Date.now() + 60_000)}` })), OVERRIDE);
  assert.notEqual(canaryBucket(c, fakeReq({ cookie: `beta=${s.betaCookie('id', Date.now() - 1000)}` })), OVERRIDE, 'expired beta cookie');
  assert.notEqual(canaryBucket(c, fakeReq({ cookie: `beta=${new Signer('z').betaCookie('id', Date.now() + 60_000)}` })), OVERRIDE, 'forged');
  assert.equal(canaryBucket(c, fakeReq({}, '10.1.2.3')), OVERRIDE);
  assert.equal(canaryBucket(c, fakeReq({}, '::ffff:10.1.2.3')), OVERRIDE);
  assert.equal(canaryBucket(c, fakeReq({}, '2001:db8::7')), OVERRIDE);
  assert.notEqual(canaryBucket(c, fakeReq({}, '11.1.2.3')), OVERRIDE);
  // A valid cookie: its bucket, no new cookie.
  assert.equal(canaryBucket(c, fakeReq({ cookie: `a=1; bb=${s.bucketCookie(1234)}`, 'x-user': 'u' })), 1234);
  // No (valid) cookie: the header's hash, flagged for a new cookie.
  const hashed = canaryBucket(c, fakeReq({ 'x-user': 'u' }));
  assert.ok(hashed >= BUCKETS);
  assert.equal(canaryBucket(c, fakeReq({ 'x-user': 'u', 'cookie': 'bb=1.forged' })), hashed);
  assert.equal(isCanary(c, 999), true);
  assert.equal(isCanary(c, 1000), false);
  assert.equal(isCanary(c, BUCKETS + 999), true);
});

test('canaryBucket with a random key: the split matches the weight (200,000 draws)', () => {
  for (const weight of [10, 50]) {
    const c = canaryRoute(canarySpec({ weight }));
    const n = 200_000;
    let canary = 0;
    for (let i = 0; i < n; i++) if (isCanary(c, canaryBucket(c, fakeReq({})))) canary++;
    // sd ≈ 0.11 points at 50%: ±0.75 points is ~7 sd.
    assert.ok(Math.abs((canary / n) * 100 - weight) < 0.75, `weight ${weight}: ${((canary / n) * 100).toFixed(2)}%`);
  }
});

test('the spec is checked before anything is built: bad canary, maintenance and pause settings', () => {
  const bad: [Partial<ServiceRouteSpec>, RegExp][] = [
    [{ canary: canarySpec({ weight: 101 }) }, /weight/],
    [{ canary: canarySpec({ weight: Number.NaN }) }, /weight/],
    [{ canary: canarySpec({ sticky: { cookie: 'a b', secret: 'x', key: { kind: 'random' } } }) }, /cookie name/],
    [{ canary: canarySpec({ sticky: { cookie: 'bb', secret: '', key: { kind: 'random' } } }) }, /secret/],
    [{ canary: canarySpec({ overrides: { header: null, betaCookie: 'bb', networks: [] } }) }, /different names/],
    [{ canary: canarySpec({ overrides: { header: null, betaCookie: null, networks: ['10.0.0.0/33'] } }) }, /10\.0\.0\.0\/33/],
    [{ canary: canarySpec({ overrides: { header: { name: 'bad header', value: 'x' }, betaCookie: null, networks: [] } }) }, /header/],
    [{ maintenance: { html: 'x', retryAfterSeconds: -1, allow: [] } }, /retryAfterSeconds/],
    [{ maintenance: { html: 'x', retryAfterSeconds: 5, allow: ['example.com'] } }, /example\.com/],
    [{ pause: { maxQueued: -1, maxWaitMs: 100 } }, /maxQueued/],
    [{ pause: { maxQueued: 1, maxWaitMs: 0 } }, /maxWaitMs/],
    [
      { targets: [{ id: 't1', release: 'r1', host: '127.0.0.1', port: 1 }], canary: canarySpec({ targets: [{ id: 't1', release: 'r2', host: '127.0.0.1', port: 2 }] }) },
      /appears twice/,
    ],
  ];
  for (const [extra, message] of bad) {
    let made = 0;
    assert.throws(
      () =>
        buildSnapshot(
          { services: [{ name: 's', hosts: [], isDefault: true, balance: 'round_robin', upstream: UP, targets: [], ...extra }] },
          {
            target: () => {
              made++;
              throw new Error('no target may be made');
            },
            shared,
          },
        ),
      (err: unknown) => err instanceof BatonError && err.code === 'CONFIG_INVALID' && message.test(err.message),
      String(message),
    );
    assert.equal(made, 0);
  }
});

test('CIDR parsing and matching: IPv4, IPv6, IPv4-mapped, bare addresses', () => {
  assert.deepEqual(parseCidr('10.0.0.0/8'), { address: '10.0.0.0', prefix: 8, family: 'ipv4' });
  assert.deepEqual(parseCidr('::1'), { address: '::1', prefix: 128, family: 'ipv6' });
  for (const bad of ['10.0.0.0/33', '::/129', 'x', '10.0.0.0/', '10.0.0.0/-1', '1.2.3.4/8/8', '']) assert.equal(parseCidr(bad), null, bad);
  const m = new AddressMatcher(['127.0.0.2', '192.168.0.0/16', 'fd00::/8'], 'test');
  assert.equal(m.matches('127.0.0.2'), true);
  assert.equal(m.matches('127.0.0.1'), false);
  assert.equal(m.matches('::ffff:127.0.0.2'), true);
  assert.equal(m.matches('::ffff:192.168.44.1'), true);
  assert.equal(m.matches('fd12::1'), true);
  assert.equal(m.matches('fe80::1%eth0'), false);
  assert.equal(m.matches('::1'), false);
  assert.equal(m.matches(undefined), false);
  assert.equal(m.matches('garbage'), false);
  assert.throws(() => new AddressMatcher(['300.1.1.1'], 'allow'), /allow: "300\.1\.1\.1"/);
});
