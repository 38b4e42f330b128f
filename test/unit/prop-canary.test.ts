// Properties of the canary split (src/proxy/split.ts, sticky.ts), checked by
// fast-check through the real path a request takes: a snapshot built by
// buildSnapshot with real target states (upstream pools that never connect),
// Node's IncomingMessage on a socket tagged with its client, chooseWithCanary
// picking the pool, and the Set-Cookie it hands out read back as the next
// request's cookie. For any weight in [0, 100]: the canary's share of many
// visitors is within a statistical bound of the weight; a visitor stays on its
// side; raising the weight only moves visitors from stable to canary; a beta
// pin (or the override header, or network) always wins.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import fc from 'fast-check';
import { buildSnapshot, type CanaryRoute, type ServiceRoute } from '../../src/proxy/snapshot.ts';
import { chooseWithCanary } from '../../src/proxy/split.ts';
import { BUCKETS, cookieValue, signerFor, Signer } from '../../src/proxy/sticky.ts';
import { setClient } from '../../src/proxy/client.ts';
import { TargetState } from '../../src/proxy/target.ts';
import { ReleaseStats } from '../../src/proxy/metrics.ts';
import type { CanarySpec, UpstreamTarget } from '../../src/proxy/types.ts';
import { checkProperty, freshShared, latin1 } from '../helpers/property.ts';

const UP = { keepAliveTimeoutMs: 1000, connectTimeoutMs: 1000, responseTimeoutMs: 1000 };
const SECRET = 'prop-secret';
const COOKIE = 'bb';
const BETA = 'beta';
const STABLE: UpstreamTarget = { id: 'stable-1', host: '127.0.0.1', port: 9, release: 'stable' };
const CANARY: UpstreamTarget = { id: 'canary-1', host: '127.0.0.1', port: 9, release: 'canary' };

type KeyKind = 'random' | 'header' | 'client_address';

interface Split {
  route: ServiceRoute;
  canary: CanaryRoute;
}

/** Builds snapshots of one service with a canary; the target states (and their pools) are made once and closed after the test. */
function splitter(t: TestContext): (weight: number, kind: KeyKind, secret?: string) => Split {
  const targets = new Map<string, TargetState>();
  t.after(() => Promise.all([...targets.values()].map((s) => s.pool.close())));
  const sharedState = freshShared('s');
  return (weight, kind, secret = SECRET) => {
    const canary: CanarySpec = {
      release: 'canary',
      targets: [CANARY],
      weight,
      sticky: { cookie: COOKIE, secret, key: kind === 'header' ? { kind: 'header', header: 'X-User' } : { kind } },
      overrides: { header: { name: 'X-Release', value: 'canary' }, betaCookie: BETA, networks: ['10.9.0.0/16', 'fd00:9::/32'] },
    };
    const snap = buildSnapshot(
      { services: [{ name: 's', hosts: [], isDefault: true, balance: 'round_robin', upstream: UP, targets: [STABLE], canary }] },
      {
        target: (spec, service, upstream) => {
          let s = targets.get(spec.id);
          if (s === undefined) targets.set(spec.id, (s = new TargetState(spec, service, upstream, new ReleaseStats(service, spec.release))));
          return s;
        },
        shared: () => sharedState,
      },
    );
    const route = snap.services.get('s')!;
    return { route, canary: route.canary! };
  };
}

interface Visitor {
  /** The X-User header (header key), if any. */
  user?: string;
  /** The client's address (client_address key; also matched against the override networks). */
  address: string;
  cookie?: string;
  overrideHeader?: string;
}

/**
 * One socket for every request: tagged anew with each visitor's address (as a
 * listener tags a connection when it accepts it) just before the decision, which
 * reads it synchronously. A socket per request would cost most of the run time.
 */
const socket = new net.Socket();

/** Node's request object on a socket tagged with the visitor's address. */
function request(v: Visitor): http.IncomingMessage {
  setClient(socket, { address: v.address, proto: 'http', trusted: false });
  const req = new http.IncomingMessage(socket);
  if (v.user !== undefined) req.headers['x-user'] = v.user;
  if (v.cookie !== undefined) req.headers.cookie = v.cookie;
  if (v.overrideHeader !== undefined) req.headers['x-release'] = v.overrideHeader;
  return req;
}

interface Decision {
  canary: boolean;
  setCookie: string | null;
}

function decide(s: Split, v: Visitor): Decision {
  const choice = chooseWithCanary(s.route, s.canary, request(v));
  // Both pools have a target: the chosen pool's target is the answer, never a fallback.
  assert.equal(choice.target?.release, choice.canary ? 'canary' : 'stable');
  return { canary: choice.canary, setCookie: choice.setCookie };
}

/** The cookie a browser sends back for a Set-Cookie of baton's ("name=value; Path=/; ..."). */
function cookieFrom(setCookie: string): string {
  return setCookie.slice(0, setCookie.indexOf(';'));
}

/** Addresses outside the override networks (10.9/16, fd00:9::/32). */
const addressArb = fc.oneof(
  fc.ipV4().filter((a) => !a.startsWith('10.9.')),
  fc.ipV6().filter((a) => !a.toLowerCase().startsWith('fd00:9:')),
  fc.ipV4().filter((a) => !a.startsWith('10.9.')).map((a) => `::ffff:${a}`),
);
/** Any weight a canary plan can name: whole, hundredths, or any double in range. */
const weightArb = fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 10_000 }).map((x) => x / 100), fc.double({ min: 0, max: 100, noNaN: true }));
/** Other cookies a browser may send, with names that start or end like baton's. */
const otherCookiesArb = fc.array(
  fc.tuple(fc.constantFrom('b', 'bbx', 'xbb', 'betax', 'session', 'bb_', 'Bb'), fc.string({ unit: fc.constantFrom(...'abcXYZ019.-_='.split('')), maxLength: 12 })).map(([n, v]) => `${n}=${v}`),
  { maxLength: 3 },
);
/** Where a cookie goes among others: the cookies before it and after it, and the separator. */
const placementArb = fc.tuple(otherCookiesArb, otherCookiesArb, fc.constantFrom('; ', ';'));
function place(cookie: string, [before, after, sep]: [string[], string[], string]): string {
  return [...before, cookie, ...after].join(sep);
}

/** `s` with one character replaced by `ch` (or with an "x" appended if that changes nothing). */
function altered(s: string, at: number, ch: string): string {
  const i = at % s.length;
  return s[i] === ch ? `${s}x` : s.slice(0, i) + ch + s.slice(i + 1);
}
const charArb = fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 });

const N = 2000;

/** N distinct visitor keys of one family: sequential ids, uuids, short strings, sequential IPv4 or IPv6 addresses. */
const populationArb: fc.Arbitrary<{ kind: 'header' | 'client_address'; keys: string[] }> = fc.oneof(
  fc.tuple(fc.constantFrom('', 'user-', 'u', 'customer:'), fc.nat(1_000_000_000)).map(([prefix, base]) => ({ kind: 'header' as const, keys: Array.from({ length: N }, (_, i) => `${prefix}${base + i}`) })),
  fc.uniqueArray(fc.uuid(), { minLength: N, maxLength: N }).map((keys) => ({ kind: 'header' as const, keys })),
  fc.uniqueArray(fc.string({ minLength: 1, maxLength: 12 }), { minLength: N, maxLength: N }).map((keys) => ({ kind: 'header' as const, keys })),
  fc.integer({ min: 0x0b000000, max: 0xdf000000 }).map((base) => ({
    kind: 'client_address' as const,
    keys: Array.from({ length: N }, (_, i) => {
      const a = base + i;
      return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
    }),
  })),
  fc.integer({ min: 0x1000, max: 0xefff }).map((w) => ({ kind: 'client_address' as const, keys: Array.from({ length: N }, (_, i) => `2001:db8:${w.toString(16)}::${i.toString(16)}`) })),
);

test('split: for any weight, the canary\'s share of 2,000 distinct visitors is within 5 standard deviations of it (0 and 100 exact)', (t) => {
  const split = splitter(t);
  checkProperty(
    t,
    fc.property(weightArb, populationArb, (weight, { kind, keys }) => {
      const s = split(weight, kind);
      const p = Math.round(weight * 100) / BUCKETS;
      let canary = 0;
      for (const key of keys) if (decide(s, kind === 'header' ? { user: key, address: '192.0.2.1' } : { address: key }).canary) canary++;
      const share = canary / N;
      if (p === 0 || p === 1) {
        assert.equal(share, p, `weight ${weight}`);
        return;
      }
      const bound = 5 * Math.sqrt((p * (1 - p)) / N) + 1 / N;
      assert.ok(Math.abs(share - p) <= bound, `weight ${weight} (${kind} key, e.g. ${keys[0]}): canary share ${share}, expected ${p} ± ${bound.toFixed(4)}`);
    }),
    60,
    { shrink: false },
  );
});

const visitorArb: fc.Arbitrary<Visitor> = fc.record({ user: fc.option(fc.string({ minLength: 1, maxLength: 24 }), { nil: undefined }), address: addressArb });
const kindArb = fc.constantFrom<KeyKind>('random', 'header', 'client_address');

test('stickiness: a visitor without a cookie is given one, and with it lands on the same side for the same weight, even from another address or with another key', (t) => {
  const split = splitter(t);
  checkProperty(
    t,
    fc.property(weightArb, kindArb, visitorArb, visitorArb, fc.integer({ min: 2, max: 5 }), (weight, kind, first, later, repeats) => {
      const s = split(weight, kind);
      const d = decide(s, first);
      assert.ok(d.setCookie !== null, 'a visitor without a cookie gets one');
      assert.match(d.setCookie, new RegExp(`^${COOKIE}=\\d{1,4}\\.[A-Za-z0-9_-]{16}; Path=/; HttpOnly; SameSite=Lax; Max-Age=\\d+$`));
      // Without the cookie, a key (not the random one) gives the same side again and again.
      if (kind !== 'random' && (kind !== 'header' || first.user !== undefined)) {
        for (let i = 0; i < repeats; i++) assert.equal(decide(s, first).canary, d.canary, 'the same key, the same side');
      }
      const cookie = cookieFrom(d.setCookie);
      for (let i = 0; i < repeats; i++) {
        const again = decide(s, { ...later, cookie });
        assert.equal(again.canary, d.canary, 'the cookie keeps the visitor on its side');
        assert.equal(again.setCookie, null, 'a valid cookie is not set again');
      }
    }),
    800,
  );
});

test('stickiness: the cookie is found among any other cookies, and a forged or garbled one counts as absent', (t) => {
  const split = splitter(t);
  const other = new Signer('another secret');
  checkProperty(
    t,
    fc.property(
      weightArb,
      fc.constantFrom<KeyKind>('header', 'client_address'),
      fc.record({ user: fc.string({ minLength: 1, maxLength: 24 }), address: addressArb }),
      fc.integer({ min: 0, max: BUCKETS - 1 }),
      fc.oneof(
        fc.integer({ min: 0, max: BUCKETS - 1 }).map((b) => other.bucketCookie(b)),
        fc.integer({ min: 0, max: BUCKETS - 1 }).map((b) => `${b}.${'A'.repeat(16)}`),
        fc.tuple(fc.integer({ min: 0, max: BUCKETS - 1 }), fc.nat(), charArb).map(([b, at, ch]) => altered(signerFor(SECRET).bucketCookie(b), at, ch)),
        fc.integer({ min: 0, max: BUCKETS - 1 }).map((b) => `0${signerFor(SECRET).bucketCookie(b)}`),
        latin1({ maxLength: 30 }).filter((v) => !v.includes(';')),
      ),
      placementArb,
      (weight, kind, visitor, bucket, forged, placement) => {
        const s = split(weight, kind);
        const valid = signerFor(SECRET).bucketCookie(bucket);
        // What the cookie parser reads (quotes and spaces around a value are not part of it).
        fc.pre(signerFor(SECRET).bucketOf(cookieValue(`${COOKIE}=${forged}`, COOKIE) ?? '') < 0);
        const withValid = place(`${COOKIE}=${valid}`, placement);
        assert.equal(decide(s, { ...visitor, cookie: withValid }).canary, bucket < Math.round(weight * 100), `bucket ${bucket} at weight ${weight}`);
        const plain = decide(s, visitor);
        const withForged = decide(s, { ...visitor, cookie: `${COOKIE}=${forged}` });
        assert.deepEqual(withForged, plain, 'a forged cookie is no cookie: the key decides, and a real cookie is set');
      },
    ),
    800,
  );
});

test('monotonicity: raising the weight only ever moves a visitor from stable to canary, never back', (t) => {
  const split = splitter(t);
  checkProperty(
    t,
    fc.property(
      fc.array(weightArb, { minLength: 2, maxLength: 6 }).map((ws) => ws.sort((a, b) => a - b)),
      fc.constantFrom<KeyKind>('header', 'client_address', 'random'),
      fc.array(fc.record({ user: fc.string({ minLength: 1, maxLength: 16 }), address: addressArb, bucket: fc.option(fc.integer({ min: 0, max: BUCKETS - 1 }), { nil: undefined }) }), { minLength: 1, maxLength: 40 }),
      (weights, kind, visitors) => {
        const steps = weights.map((w) => split(w, kind));
        for (const v of visitors) {
          // The random key draws anew without a cookie: such a visitor is followed by its cookie, as a browser is.
          const cookie = v.bucket !== undefined ? `${COOKIE}=${signerFor(SECRET).bucketCookie(v.bucket)}` : kind === 'random' ? cookieFrom(decide(steps[0]!, v).setCookie!) : undefined;
          const sides = steps.map((s) => decide(s, { ...v, cookie }).canary);
          const firstCanary = sides.indexOf(true);
          if (firstCanary >= 0) assert.ok(sides.slice(firstCanary).every(Boolean), `weights ${weights.join(' → ')}: sides ${sides.join(', ')}`);
        }
      },
    ),
    400,
  );
});

/** A beta cookie signed by the canary's secret, valid for another minute at least. */
const betaArb = fc.tuple(fc.string({ unit: fc.constantFrom(...'abcdefXYZ0123456789_-'.split('')), minLength: 1, maxLength: 20 }), fc.integer({ min: 60_000, max: 30 * 86_400_000 })).map(([id, ttl]) => signerFor(SECRET).betaCookie(id, Date.now() + ttl));

test('beta pins always win: a valid beta cookie, the override header or an override network send to the canary at any weight, whatever bucket the visitor has', (t) => {
  const split = splitter(t);
  checkProperty(
    t,
    fc.property(
      weightArb,
      kindArb,
      visitorArb,
      fc.option(fc.integer({ min: 0, max: BUCKETS - 1 }), { nil: undefined }),
      placementArb,
      fc.oneof(
        betaArb.map((b) => ({ beta: b })),
        fc.constant({ header: true }),
        fc.oneof(fc.ipV4().map((a) => `10.9.${a.split('.').slice(2).join('.')}`), fc.ipV4().map((a) => `::ffff:10.9.${a.split('.').slice(2).join('.')}`), fc.nat(0xffff).map((x) => `fd00:9::${x.toString(16)}`)).map((address) => ({ address })),
      ),
      (weight, kind, visitor, bucket, placement, pin) => {
        const s = split(weight, kind);
        const cookies: string[] = [];
        if (bucket !== undefined) cookies.push(`${COOKIE}=${signerFor(SECRET).bucketCookie(bucket)}`);
        if ('beta' in pin) cookies.push(`${BETA}=${pin.beta}`);
        const cookie = cookies.length === 0 ? undefined : place(cookies.join('; '), placement);
        const v: Visitor = { ...visitor, cookie, overrideHeader: 'header' in pin ? 'canary' : undefined, address: 'address' in pin ? pin.address : visitor.address };
        const routing = s.route.shared.routing;
        const overrides = routing.overrides;
        const d = decide(s, v);
        assert.equal(d.canary, true, 'pinned to the canary');
        assert.equal(d.setCookie, null, 'a pin sets no bucket cookie');
        assert.equal(routing.overrides, overrides + 1, 'counted as an override');
      },
    ),
    1000,
  );
});

test('beta pins: an expired, foreign or altered beta cookie, or another override value, pins nothing', (t) => {
  const split = splitter(t);
  const now = Date.now();
  checkProperty(
    t,
    fc.property(
      weightArb,
      fc.constantFrom<KeyKind>('header', 'client_address'),
      fc.record({ user: fc.string({ minLength: 1, maxLength: 24 }), address: addressArb }),
      fc.oneof(
        fc.integer({ min: 1, max: 86_400_000 }).map((ago) => ({ cookie: `${BETA}=${signerFor(SECRET).betaCookie('id', now - ago - 1000)}` })),
        fc.constant({ cookie: `${BETA}=${new Signer('another secret').betaCookie('id', now + 3_600_000)}` }),
        fc.tuple(fc.nat(), charArb).map(([at, ch]) => ({ cookie: `${BETA}=${altered(signerFor(SECRET).betaCookie('id', now + 3_600_000), at, ch)}` })),
        fc.constantFrom('Canary', 'canary ', 'canary, canary', '').map((value) => ({ header: value })),
      ),
      (weight, kind, visitor, bad) => {
        const s = split(weight, kind);
        const plain = decide(s, visitor);
        const got = decide(s, 'cookie' in bad ? { ...visitor, cookie: bad.cookie } : { ...visitor, overrideHeader: bad.header });
        assert.deepEqual(got, plain);
      },
    ),
    800,
  );
});

test('signed bucket values: every bucket reads back, and only the one spelling of a bucket baton wrote is accepted', (t) => {
  const signer = signerFor(SECRET);
  checkProperty(
    t,
    fc.property(
      fc.integer({ min: 0, max: BUCKETS - 1 }),
      fc.oneof(latin1({ maxLength: 24 }), fc.string({ unit: fc.constantFrom(...'0123456789.'.split('')), maxLength: 8 }), fc.tuple(fc.integer({ min: 0, max: BUCKETS - 1 }), fc.nat(), fc.string({ maxLength: 2 })).map(([b, at, s]) => {
        const v = signer.bucketCookie(b);
        const i = at % (v.length + 1);
        return v.slice(0, i) + s + v.slice(i);
      })),
      (bucket, text) => {
        assert.equal(signer.bucketOf(signer.bucketCookie(bucket)), bucket);
        const b = signer.bucketOf(text);
        assert.ok(b === -1 || (b >= 0 && b < BUCKETS));
        if (b >= 0) assert.equal(text, signer.bucketCookie(b), 'accepted only as written');
      },
    ),
    3000,
  );
});
