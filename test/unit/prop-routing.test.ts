// Properties of routing (src/proxy/snapshot.ts, src/proxy/request-target.ts),
// checked by fast-check on real snapshots built by buildSnapshot and on Node's
// own IncomingMessage: a request goes to the service whose host matches, in any
// case, with or without a trailing dot or a port, in origin-form or
// absolute-form; arbitrary text never throws and never routes elsewhere than
// the matching service or the default one.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import fc from 'fast-check';
import { buildSnapshot, normalizeHost, type RoutingSnapshot } from '../../src/proxy/snapshot.ts';
import { normaliseAbsoluteForm, parseAbsoluteForm } from '../../src/proxy/request-target.ts';
import { forwardRequestHeaders } from '../../src/proxy/headers.ts';
import { BatonError } from '../../src/core/errors.ts';
import type { ServiceRouteSpec } from '../../src/proxy/types.ts';
import { checkProperty, freshShared, latin1 } from '../helpers/property.ts';

const UP = { keepAliveTimeoutMs: 1000, connectTimeoutMs: 1000, responseTimeoutMs: 1000 };

/** Services without instances (no upstream pools are made): routing only. */
function snapshot(services: { name: string; hosts: string[]; isDefault?: boolean }[]): RoutingSnapshot {
  const specs: ServiceRouteSpec[] = services.map((s) => ({ name: s.name, hosts: s.hosts, isDefault: s.isDefault ?? false, balance: 'round_robin', upstream: UP, targets: [] }));
  return buildSnapshot({ services: specs }, { target: () => assert.fail('no targets'), shared: freshShared });
}

/** A host name as configured: a DNS name, an IPv4 address or a bracketed IPv6 literal, lowercase. */
const hostNameArb = fc.oneof({ arbitrary: fc.domain(), weight: 6 }, { arbitrary: fc.ipV4(), weight: 1 }, { arbitrary: fc.ipV6().map((a) => `[${a}]`), weight: 1 });

/** Another spelling of the same host: letters in any case, perhaps a trailing dot (not after an IP literal), perhaps a port. */
function spelling(host: string): fc.Arbitrary<string> {
  const dot = host.startsWith('[') ? fc.constant('') : fc.constantFrom('', '.');
  return fc.tuple(fc.mixedCase(fc.constant(host)), dot, fc.option(fc.integer({ min: 0, max: 65535 }), { nil: undefined }), fc.constantFrom('', ' ', '\t')).map(
    ([h, d, port, ows]) => `${ows}${h}${d}${port === undefined ? '' : `:${port}`}${ows}`,
  );
}

/** Up to 6 services with distinct host names, one of them perhaps the default. */
const servicesArb = fc
  .uniqueArray(hostNameArb, { minLength: 1, maxLength: 12, selector: (h) => h.toLowerCase() })
  .chain((hosts) =>
    fc.tuple(fc.constant(hosts.map((h) => h.toLowerCase())), fc.array(fc.nat(5), { minLength: hosts.length, maxLength: hosts.length }), fc.option(fc.nat(5), { nil: null })),
  )
  .map(([hosts, owners, def]) => {
    const services = new Map<string, { name: string; hosts: string[]; isDefault: boolean }>();
    hosts.forEach((h, i) => {
      const name = `s${owners[i]}`;
      if (!services.has(name)) services.set(name, { name, hosts: [], isDefault: false });
      services.get(name)!.hosts.push(h);
    });
    const list = [...services.values()];
    if (def !== null) list[def % list.length]!.isDefault = true;
    return list;
  });

test('routing: a request reaches the service of its host, whatever the case, trailing dot, port or spacing of the Host', (t) => {
  checkProperty(
    t,
    fc.property(
      servicesArb.chain((services) => {
        const all = services.flatMap((s) => s.hosts.map((h) => [s.name, h] as const));
        return fc.tuple(fc.constant(services), fc.constantFrom(...all).chain(([name, h]) => fc.tuple(fc.constant(name), spelling(h))));
      }),
      ([services, [name, header]]) => {
        const snap = snapshot(services);
        assert.equal(snap.route(header)?.name, name, `Host "${header}"`);
        // The configured spelling may differ too: routing compares normalised names.
        const respelled = snapshot(services.map((s) => ({ ...s, hosts: s.hosts.map((h) => (h.startsWith('[') ? h : `${h.toUpperCase()}.`)) })));
        assert.equal(respelled.route(header)?.name, name, `Host "${header}" against upper-case configured names`);
      },
    ),
    1500,
  );
});

test('routing: any Host text (latin1, as Node reads it) routes to the service whose host it names, else to the default, and never throws', (t) => {
  const text = fc.oneof(latin1({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), hostNameArb.chain(spelling), hostNameArb.map((h) => `${h}/x@y`));
  checkProperty(
    t,
    fc.property(servicesArb, fc.array(text, { minLength: 1, maxLength: 30 }), (services, headers) => {
      const snap = snapshot(services);
      const byHost = new Map(services.flatMap((s) => s.hosts.map((h) => [h, s.name] as const)));
      const def = services.find((s) => s.isDefault)?.name ?? null;
      for (const header of headers) {
        const expected = byHost.get(normalizeHost(header)) ?? def;
        // Twice: the second answer comes from the memo of Host values.
        assert.equal(snap.route(header)?.name ?? null, expected, `Host "${header}"`);
        assert.equal(snap.route(header)?.name ?? null, expected, `Host "${header}" (memo)`);
      }
      assert.equal(snap.route(undefined)?.name ?? null, def, 'no Host: the default service');
    }),
    800,
  );
});

test('routing: the memo of Host values is a cache only: past its bound, every answer is still the uncached one', (t) => {
  checkProperty(
    t,
    fc.property(servicesArb, fc.integer({ min: 1025, max: 3000 }), fc.nat(), (services, n, salt) => {
      const snap = snapshot(services);
      const fresh = (): RoutingSnapshot => snapshot(services);
      const hosts = services.flatMap((s) => s.hosts);
      const headers: string[] = [];
      for (let i = 0; i < n; i++) headers.push(i % 3 === 0 ? `${hosts[i % hosts.length]!.toUpperCase()}:${(salt + i) % 65536}` : `junk-${salt}-${i}.test`);
      for (const h of headers) snap.route(h);
      const reference = fresh();
      for (const h of headers) assert.equal(snap.route(h)?.name ?? null, reference.route(h)?.name ?? null, h);
    }),
    20,
  );
});

test('routing: two services naming the same host in any spelling are refused (CONFIG_INVALID), never routed ambiguously', (t) => {
  checkProperty(
    t,
    fc.property(hostNameArb.chain((h) => fc.tuple(spelling(h), spelling(h))), ([a, b]) => {
      assert.throws(
        () => snapshot([{ name: 'one', hosts: [a.trim()] }, { name: 'two', hosts: [b.trim()] }]),
        (err: unknown) => err instanceof BatonError && err.code === 'CONFIG_INVALID' && err.message.includes('routed to both'),
      );
    }),
    500,
  );
});

/** An absolute-form target and what it must split into. */
const absoluteArb = fc
  .tuple(
    fc.mixedCase(fc.constantFrom('http', 'https')),
    hostNameArb,
    fc.option(fc.integer({ min: 0, max: 65535 }), { nil: undefined }),
    fc.oneof(fc.constant(''), fc.webPath().filter((p) => p.startsWith('/'))),
    fc.option(fc.webQueryParameters(), { nil: undefined }),
  )
  .map(([scheme, host, port, path, query]) => {
    const authority = `${host}${port === undefined ? '' : `:${port}`}`;
    const rest = `${path}${query === undefined ? '' : `?${query}`}`;
    return { target: `${scheme}://${authority}${rest}`, host, authority, path: rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest };
  });

test('absolute-form: http(s)://authority/path splits into that authority and origin-form path', (t) => {
  checkProperty(
    t,
    fc.property(absoluteArb, ({ target, authority, path }) => {
      assert.deepEqual(parseAbsoluteForm(target), { authority, path });
    }),
    1500,
  );
});

test('absolute-form: arbitrary targets never throw; what is accepted has a clean authority and an origin-form path', (t) => {
  const targetArb = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 60 }),
    latin1({ maxLength: 60 }),
    fc.webUrl({ validSchemes: ['http', 'https', 'ftp', 'HTTP'], withFragments: true, withQueryParameters: true, authoritySettings: { withUserInfo: true, withPort: true, withIPv4: true, withIPv6: true } }),
    absoluteArb.chain(({ target }) => fc.tuple(fc.constant(target), fc.nat(), latin1({ minLength: 1, maxLength: 3 })).map(([s, at, junk]) => s.slice(0, at % (s.length + 1)) + junk + s.slice(at % (s.length + 1)))),
  );
  checkProperty(
    t,
    fc.property(targetArb, (target) => {
      const form = parseAbsoluteForm(target);
      if (form === null) return;
      assert.match(target, /^https?:\/\//i);
      assert.ok(form.authority.length > 0);
      assert.doesNotMatch(form.authority, /[\s/?#@\\\0]/, `authority "${form.authority}"`);
      assert.ok(form.path.startsWith('/'), `path "${form.path}"`);
      assert.ok(!form.path.includes('#'), 'no fragment is forwarded');
      // Nothing lost or added: the target is scheme://, the authority, then the path (or a query, or nothing).
      const after = target.slice(target.indexOf('://') + 3);
      assert.ok(after.startsWith(form.authority));
      const rest = after.slice(form.authority.length);
      assert.equal(form.path, rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest);
    }),
    3000,
  );
});

/** Node's own request object, as the parser would fill it. */
function incoming(url: string, raw: string[]): http.IncomingMessage {
  const req = new http.IncomingMessage(new net.Socket());
  req.url = url;
  req.rawHeaders = raw;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    // Node keeps the first Host; an absent one stays absent.
    if (req.headers[name] === undefined) req.headers[name] = raw[i + 1]!;
  }
  return req;
}

test('absolute-form request: routed by the target\'s authority, and the instance is sent that one Host, whatever Host lines came with it', (t) => {
  checkProperty(
    t,
    fc.property(
      servicesArb,
      absoluteArb,
      fc.array(fc.tuple(fc.mixedCase(fc.constant('host')), fc.oneof(hostNameArb, latin1({ maxLength: 20 }))), { maxLength: 3 }),
      fc.array(fc.tuple(fc.constantFrom('Accept', 'Cookie', 'X-Id'), latin1({ maxLength: 10 })), { maxLength: 3 }),
      (services, abs, hostLines, others) => {
        const raw = [...hostLines, ...others].flat();
        const req = incoming(abs.target, raw);
        assert.equal(normaliseAbsoluteForm(req), true);
        assert.equal(req.url, abs.path);
        assert.equal(req.headers.host, abs.authority);
        const snap = snapshot(services);
        const owner = services.find((s) => s.hosts.includes(abs.host.toLowerCase()))?.name ?? services.find((s) => s.isDefault)?.name ?? null;
        assert.equal(snap.route(req.headers.host)?.name ?? null, owner);
        const out = forwardRequestHeaders(req.rawHeaders, { address: '127.0.0.1', proto: 'http', trusted: false });
        const hosts = out.filter((_, i) => i % 2 === 1 && out[i - 1]!.toLowerCase() === 'host');
        assert.deepEqual(hosts, [abs.authority]);
        // The other fields go through untouched.
        const rest = req.rawHeaders.filter((_, i, r) => r[i - (i % 2)]!.toLowerCase() !== 'host');
        assert.deepEqual(rest, others.flat());
      },
    ),
    1000,
  );
});

test('origin-form and "*" targets are left as they are', (t) => {
  checkProperty(
    t,
    fc.property(fc.oneof(fc.webPath().map((p) => `/${p.replace(/^\//, '')}`), fc.constant('*')), fc.array(fc.tuple(fc.constantFrom('Host', 'host', 'Accept'), latin1({ maxLength: 12 })), { maxLength: 3 }), (url, lines) => {
      const raw = lines.flat();
      const req = incoming(url, [...raw]);
      const host = req.headers.host;
      assert.equal(normaliseAbsoluteForm(req), true);
      assert.equal(req.url, url);
      assert.equal(req.headers.host, host);
      assert.deepEqual(req.rawHeaders, raw);
    }),
    500,
  );
});
