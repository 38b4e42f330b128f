// Properties of header processing (src/proxy/headers.ts), checked by fast-check
// against a model written from the rules (RFC 9110 7.6.1, RFC 7239, the trust
// rule of X-Forwarded-*), on raw header lists of any shape: every special name
// in any case, look-alikes of them (same length and first letter: the fast
// path's filter), Connection lists nominating any of the names present, several
// Host, X-Forwarded-* and Forwarded lines, trusted and untrusted peers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { connectionNominated, forwardRequestHeaders, forwardResponseHeaders } from '../../src/proxy/headers.ts';
import type { ClientConnection } from '../../src/proxy/client.ts';
import { checkProperty } from '../helpers/property.ts';
import { FORWARDING, HOP_BY_HOP, OPTIONS_NOT_NOMINATING, forwardedModel as model, pairs } from '../helpers/header-model.ts';

const SPECIAL = [...HOP_BY_HOP, ...FORWARDING, 'host', 'expect'];
/** Same length and first letter as a special name: what the fast path must not mistake for one. */
const LOOK_ALIKES = ['tx', 'hosx', 'hots', 'expecx', 'forwardex', 'connectiox', 'keep-alivx', 'trailex', 'upgradx', 'x-forwarded-fox', 'proxy-connectiox', 'x-forwarded-hosx', 'transfer-encodinx', 'x-forwarded-protx', 'te-', 'hostt'];
const COMMON = ['accept', 'cookie', 'user-agent', 'content-length', 'content-type', 'authorization', 'x-request-id'];

const TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const tokenArb = fc.string({ unit: fc.constantFrom(...TCHAR.split('')), minLength: 1, maxLength: 18 });
const nameArb = fc.oneof(
  { arbitrary: fc.mixedCase(fc.constantFrom(...SPECIAL)), weight: 4 },
  { arbitrary: fc.mixedCase(fc.constantFrom(...LOOK_ALIKES)), weight: 2 },
  { arbitrary: fc.mixedCase(fc.constantFrom(...COMMON)), weight: 2 },
  { arbitrary: tokenArb, weight: 2 },
);
/** A field value as Node's parser hands it over: latin1 text without CR, LF or NUL. */
const valueArb = fc.string({
  unit: fc.integer({ min: 1, max: 255 }).filter((c) => c !== 10 && c !== 13).map((c) => String.fromCharCode(c)),
  maxLength: 24,
});
const hostValueArb = fc.oneof(fc.domain(), fc.tuple(fc.domain(), fc.integer({ min: 1, max: 65535 })).map(([d, p]) => `${d}:${p}`), valueArb);

const factsArb: fc.Arbitrary<ClientConnection> = fc.record({
  address: fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4().map((a) => `::ffff:${a}`)),
  proto: fc.constantFrom('http' as const, 'https' as const),
  trusted: fc.boolean(),
});

/** A Connection value nominating `names` (and perhaps close/keep-alive/upgrade), with any spacing and case. */
function connectionValue(names: string[]): fc.Arbitrary<string> {
  return fc
    .tuple(fc.subarray(OPTIONS_NOT_NOMINATING), fc.array(fc.constantFrom(',', ', ', ' ,', ' , ', ',,'), { minLength: names.length + 3, maxLength: names.length + 3 }))
    .chain(([opts, seps]) =>
      fc.shuffledSubarray([...names, ...opts], { minLength: 0 }).chain((parts) =>
        fc.mixedCase(fc.constant(parts.map((p, i) => (i === 0 ? p : `${seps[i] ?? ','}${p}`)).join(''))),
      ),
    );
}

/** A raw header list ([name, value, ...]) with 0 to 2 Connection lines nominating names present (and others). */
const rawArb: fc.Arbitrary<string[]> = fc
  .array(fc.tuple(nameArb, valueArb, hostValueArb), { maxLength: 14 })
  .map((lines) => lines.map(([name, value, hostValue]) => [name, name.toLowerCase() === 'host' ? hostValue : value] as [string, string]))
  .chain((lines) => {
    const present = [...new Set(lines.map(([n]) => n))];
    return fc.tuple(
      fc.constant(lines),
      fc.array(fc.tuple(connectionValue([...present, 'x-extra']), fc.nat(), fc.mixedCase(fc.constant('connection'))), { maxLength: 2 }),
    );
  })
  .map(([lines, conns]) => {
    const all = [...lines];
    for (const [value, at, name] of conns) all.splice(at % (all.length + 1), 0, [name, value]);
    return all.flat();
  });

test('request headers: exactly what the rules keep, names and values byte for byte, in order; X-Forwarded-* and Forwarded replaced or appended to', (t) => {
  checkProperty(
    t,
    fc.property(rawArb, factsArb, fc.boolean(), (raw, facts, keepUpgrade) => {
      assert.deepEqual(pairs(forwardRequestHeaders(raw, facts, keepUpgrade)), model(raw, facts, keepUpgrade));
    }),
    3000,
  );
});

test('request headers: no hop-by-hop or Connection-nominated field of the client is forwarded, and baton adds each of its own once', (t) => {
  checkProperty(
    t,
    fc.property(rawArb, factsArb, fc.boolean(), (raw, facts, keepUpgrade) => {
      const out = pairs(forwardRequestHeaders(raw, facts, keepUpgrade));
      const nominated = connectionNominated(pairs(raw).filter(([n]) => n.toLowerCase() === 'connection').map(([, v]) => v)) ?? [];
      const counts = new Map<string, number>();
      for (const [name, value] of out) {
        const lower = name.toLowerCase();
        counts.set(lower, (counts.get(lower) ?? 0) + 1);
        if (lower === 'connection') assert.equal(value, 'upgrade');
        else if (lower === 'upgrade') assert.ok(keepUpgrade);
        else assert.ok(!HOP_BY_HOP.includes(lower), `hop-by-hop ${name} forwarded`);
        assert.notEqual(lower, 'expect');
        // baton's own fields may bear a nominated name; the client's never do (Host excepted: end to end).
        const own = FORWARDING.includes(lower) || (keepUpgrade && lower === 'connection');
        if (nominated.includes(lower)) assert.ok(lower === 'host' || own, `${name} was nominated by Connection`);
      }
      assert.equal(counts.get('connection') ?? 0, keepUpgrade ? 1 : 0);
      for (const f of ['x-forwarded-for', 'x-forwarded-proto', 'forwarded']) assert.equal(counts.get(f), 1, f);
      assert.ok((counts.get('x-forwarded-host') ?? 0) <= 1);
      assert.equal(counts.get('host') ?? 0, pairs(raw).filter(([n]) => n.toLowerCase() === 'host').length, 'every Host line kept');
      if (!facts.trusted) {
        const get = (n: string): string | undefined => out.find(([k]) => k.toLowerCase() === n)?.[1];
        assert.equal(get('x-forwarded-for'), facts.address);
        assert.equal(get('x-forwarded-proto'), facts.proto);
        const node = facts.address.includes(':') ? `"[${facts.address}]"` : facts.address;
        assert.ok(get('forwarded')!.startsWith(`for=${node};`), 'Forwarded is baton\'s element alone: the client\'s own are dropped');
      }
    }),
    2000,
  );
});

test('request headers: no CR, LF or NUL in any name or value produced', (t) => {
  checkProperty(
    t,
    fc.property(rawArb, factsArb, fc.boolean(), (raw, facts, keepUpgrade) => {
      for (const s of forwardRequestHeaders(raw, facts, keepUpgrade)) assert.doesNotMatch(s, /[\r\n\0]/);
    }),
    2000,
  );
});

test('request headers: the case of a name changes nothing but that name\'s case (the fast path agrees with the slow one)', (t) => {
  checkProperty(
    t,
    fc.property(
      rawArb.chain((raw) => fc.tuple(fc.constant(raw), fc.array(fc.boolean(), { minLength: raw.length, maxLength: raw.length }))),
      factsArb,
      fc.boolean(),
      ([raw, flips], facts, keepUpgrade) => {
        const recased = raw.map((s, i) => (i % 2 === 0 ? (flips[i] ? s.toUpperCase() : s.toLowerCase()) : s));
        const lower = (flat: string[]): string[] => flat.map((s, i) => (i % 2 === 0 ? s.toLowerCase() : s));
        assert.deepEqual(lower(forwardRequestHeaders(recased, facts, keepUpgrade)), lower(forwardRequestHeaders(raw, facts, keepUpgrade)));
      },
    ),
    1500,
  );
});

test('request headers: from an untrusted peer, processing twice is processing once', (t) => {
  checkProperty(
    t,
    fc.property(rawArb, factsArb, fc.boolean(), (raw, f, keepUpgrade) => {
      const facts = { ...f, trusted: false };
      const once = forwardRequestHeaders(raw, facts, keepUpgrade);
      assert.deepEqual(forwardRequestHeaders(once, facts, keepUpgrade), once);
    }),
    1500,
  );
});

test('request headers: Forwarded\'s host is a quoted-string that reads back as the Host sent (RFC 7239)', (t) => {
  checkProperty(
    t,
    fc.property(hostValueArb, factsArb, (host, f) => {
      const facts = { ...f, trusted: false };
      const fwd = pairs(forwardRequestHeaders(['Host', host], facts)).find(([n]) => n === 'forwarded')![1];
      const m = /^for=(?:[0-9.]+|"\[[0-9a-f:.]+\]");host="((?:[^"\\]|\\.)*)";proto=https?$/.exec(fwd);
      assert.ok(m !== null, `Forwarded is one well-formed element: ${fwd}`);
      assert.equal(m[1]!.replace(/\\(.)/g, '$1'), host);
    }),
    1000,
  );
});

/**
 * Response headers as the upstream parser hands them over: lowercase names, a string or a list of strings.
 * Never an own "__proto__" key: the upstream parser skips that name (src/proxy/upstream/response-parser.ts), so an instance's
 * "__proto__" field never reaches baton (checked through the proxy: it is not forwarded).
 */
const responseArb: fc.Arbitrary<Record<string, string | string[]>> = fc
  .tuple(
    fc.dictionary(fc.oneof(fc.constantFrom(...SPECIAL, ...LOOK_ALIKES, ...COMMON, 'set-cookie'), tokenArb.map((s) => s.toLowerCase()).filter((s) => s !== '__proto__')), fc.oneof(valueArb, fc.array(valueArb, { minLength: 1, maxLength: 3 })), { maxKeys: 12 }),
    fc.boolean(),
  )
  .chain(([h, nominate]) => {
    if (!nominate) return fc.constant(h);
    return connectionValue([...Object.keys(h), 'x-extra'].map((n) => n.toLowerCase())).map((c) => ({ ...h, connection: c }));
  });

test('response headers: hop-by-hop and nominated fields removed (Content-Length too beside Transfer-Encoding), every other one kept as it was; twice is once', (t) => {
  checkProperty(
    t,
    fc.property(responseArb, (headers) => {
      const out = forwardResponseHeaders(headers);
      const c = headers['connection'];
      const nominated = connectionNominated(c) ?? [];
      // A body read chunked: its Content-Length is not its length.
      const chunked = headers['transfer-encoding'] !== undefined;
      const expected: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(headers)) if (!HOP_BY_HOP.includes(k) && !nominated.includes(k) && !(chunked && k === 'content-length')) expected[k] = v;
      assert.deepEqual(out, expected);
      assert.deepEqual(forwardResponseHeaders(out as Record<string, string | string[]>), out);
    }),
    2000,
  );
});

test('connectionNominated: lowercase trimmed tokens in order, never empty, close, keep-alive or upgrade; a list and its joined string agree', (t) => {
  checkProperty(
    t,
    fc.property(fc.array(fc.oneof(connectionValue(['X-A', 'b', 'Keep-Alive']), valueArb), { minLength: 1, maxLength: 4 }), (values) => {
      const fromList = connectionNominated(values);
      const fromString = connectionNominated(values.join(','));
      assert.deepEqual(fromList, fromString);
      const expected = values
        .join(',')
        .split(',')
        .map((p) => p.trim().toLowerCase())
        .filter((p) => p !== '' && !OPTIONS_NOT_NOMINATING.includes(p));
      assert.deepEqual(fromList ?? [], expected);
      if (fromList !== null) assert.ok(fromList.length > 0);
    }),
    2000,
  );
});

test('regression (found by the first property): a Connection header naming Host leaves Host in place', () => {
  const facts: ClientConnection = { address: '::0:0:0:0:0.0.0.0', proto: 'http', trusted: false };
  assert.deepEqual(pairs(forwardRequestHeaders(['connection', 'host', 'host', ''], facts)), [
    ['host', ''],
    ['x-forwarded-for', '::0:0:0:0:0.0.0.0'],
    ['x-forwarded-proto', 'http'],
    ['x-forwarded-host', ''],
    ['forwarded', 'for="[::0:0:0:0:0.0.0.0]";host="";proto=http'],
  ]);
});
