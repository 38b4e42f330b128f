// Properties of the PROXY protocol parser (src/proxy/proxy-protocol.ts), checked
// by fast-check: the address it yields goes straight into X-Forwarded-For and
// Forwarded and into allow lists, so whatever the bytes, it is an IP address
// or nothing; a header split across reads is never refused; what follows a
// header is never part of it; IPv6 text is RFC 5952's.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import { formatIPv6, parseProxyHeader, V2_MAX_BODY } from '../../src/proxy/proxy-protocol.ts';
import { checkProperty } from '../helpers/property.ts';

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

interface Valid {
  bytes: Buffer;
  source: string | null;
  tls: boolean;
}

const bytes16 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => Buffer.from(a));
const port = fc.integer({ min: 0, max: 65535 });

/** A v1 line, as HAProxy writes it. */
const v1Arb: fc.Arbitrary<Valid> = fc.oneof(
  fc.tuple(fc.ipV4(), fc.ipV4(), port, port).map(([s, d, sp, dp]) => ({ bytes: Buffer.from(`PROXY TCP4 ${s} ${d} ${sp} ${dp}\r\n`), source: s, tls: false })),
  fc.tuple(fc.ipV6(), fc.ipV6(), port, port).map(([s, d, sp, dp]) => ({ bytes: Buffer.from(`PROXY TCP6 ${s} ${d} ${sp} ${dp}\r\n`), source: s, tls: false })),
  fc.string({ unit: fc.constantFrom(...'abc 019.:'.split('')), maxLength: 60 }).map((rest) => ({ bytes: Buffer.from(`PROXY UNKNOWN${rest === '' ? '' : ` ${rest}`}\r\n`), source: null, tls: false })),
);

/** TLVs after the addresses; the SSL one (0x20) with or without the client flag. */
const tlvsArb = fc.array(
  fc.oneof(
    fc.tuple(fc.integer({ min: 0, max: 255 }).filter((t) => t !== 0x20), fc.uint8Array({ maxLength: 20 })).map(([type, v]) => ({ buf: Buffer.concat([Buffer.from([type, v.length >> 8, v.length & 0xff]), Buffer.from(v)]), ssl: false })),
    fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ minLength: 4, maxLength: 4 })).map(([client, verify]) => ({ buf: Buffer.from([0x20, 0, 5, client, ...verify]), ssl: (client & 1) === 1 })),
  ),
  { maxLength: 4 },
);

/** A v2 header: PROXY or LOCAL, INET or INET6 or UNIX or UNSPEC, TCP or UDP, with TLVs. */
const v2Arb: fc.Arbitrary<Valid> = fc
  .tuple(fc.constantFrom(0x20, 0x21), fc.constantFrom(0, 1, 2, 3), fc.constantFrom(0, 1, 2), bytes16, bytes16, fc.uint8Array({ minLength: 216, maxLength: 216 }), tlvsArb)
  .map(([verCmd, family, transport, a, b, unix, tlvs]) => {
    const addrs = family === 1 ? Buffer.concat([a.subarray(0, 4), b.subarray(0, 4), Buffer.from([1, 2, 3, 4])]) : family === 2 ? Buffer.concat([a, b, Buffer.from([1, 2, 3, 4])]) : family === 3 ? Buffer.from(unix) : Buffer.alloc(0);
    const body = Buffer.concat([addrs, ...tlvs.map((t) => t.buf)]);
    const head = Buffer.from([verCmd, (family << 4) | transport, body.length >> 8, body.length & 0xff]);
    const proxied = verCmd === 0x21 && transport === 1;
    const source = !proxied ? null : family === 1 ? `${a[0]}.${a[1]}.${a[2]}.${a[3]}` : family === 2 ? formatIPv6(a) : null;
    return { bytes: Buffer.concat([SIG, head, body]), source, tls: tlvs.some((t) => t.ssl) };
  });

const validArb = fc.oneof(v1Arb, v2Arb);

/** `b` with up to three bytes changed, or cut, or with bytes inserted. */
function mutated(b: Buffer): fc.Arbitrary<Buffer> {
  return fc.oneof(
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }).map((edits) => {
      const out = Buffer.from(b);
      for (const [at, v] of edits) out[at % out.length] = v;
      return out;
    }),
    fc.nat().map((at) => b.subarray(0, at % (b.length + 1))),
    fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 8 })).map(([at, ins]) => Buffer.concat([b.subarray(0, at % (b.length + 1)), Buffer.from(ins), b.subarray(at % (b.length + 1))])),
  );
}

test('PROXY header: valid v1 and v2 headers parse to their source and TLS flag, with whatever follows left alone', (t) => {
  checkProperty(
    t,
    fc.property(validArb, fc.uint8Array({ maxLength: 40 }), (valid, rest) => {
      const r = parseProxyHeader(Buffer.concat([valid.bytes, Buffer.from(rest)]));
      assert.deepEqual(r, { kind: 'header', header: { source: valid.source, tls: valid.tls }, length: valid.bytes.length });
    }),
    2000,
  );
});

test('PROXY header: every cut of a valid header is incomplete, never refused (a header may come in several reads)', (t) => {
  checkProperty(
    t,
    fc.property(validArb, fc.nat(), (valid, at) => {
      const cut = at % valid.bytes.length;
      assert.deepEqual(parseProxyHeader(valid.bytes.subarray(0, cut)), { kind: 'incomplete' }, `${cut} of ${valid.bytes.length} bytes`);
    }),
    2000,
  );
});

test('PROXY header: any bytes, random or a mutated header, never throw; a source is an IP address and nothing else; the length is within the bytes', (t) => {
  checkProperty(
    t,
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)), validArb.chain((v) => mutated(v.bytes)), fc.constant(Buffer.concat([SIG, Buffer.from([0x21, 0x11, (V2_MAX_BODY + 1) >> 8, (V2_MAX_BODY + 1) & 0xff])]))), (buf) => {
      const r = parseProxyHeader(buf);
      if (r.kind !== 'header') return;
      assert.ok(r.length > 0 && r.length <= buf.length, `length ${r.length} of ${buf.length} bytes`);
      assert.ok(r.length <= 16 + V2_MAX_BODY);
      const s = r.header.source;
      if (s === null) return;
      assert.notEqual(net.isIP(s), 0, `source "${s}" is an IP address`);
      assert.doesNotMatch(s, /[\s",;\0]/, 'nothing that could break X-Forwarded-For or Forwarded');
    }),
    5000,
  );
});

/** The 8 groups of an address, written out in full. */
function fullForm(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':');
}

test('formatIPv6: the text names the same address, in RFC 5952\'s one spelling (the WHATWG URL serialiser\'s, dotted for IPv4-mapped)', (t) => {
  const mapped = fc.uint8Array({ minLength: 4, maxLength: 4 }).map((v4) => Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4]));
  const sparse = fc.array(fc.oneof({ arbitrary: fc.constant(0), weight: 3 }, { arbitrary: fc.integer({ min: 0, max: 0xffff }), weight: 1 }), { minLength: 8, maxLength: 8 }).map((groups) => {
    const b = Buffer.alloc(16);
    groups.forEach((g, i) => b.writeUInt16BE(g, i * 2));
    return b;
  });
  checkProperty(
    t,
    fc.property(fc.oneof(bytes16, mapped, sparse), (b) => {
      const text = formatIPv6(b);
      assert.equal(net.isIPv6(text), true, text);
      // Same address: the URL parser reads both spellings to the same canonical host.
      const canonical = (s: string): string => new URL(`http://[${s}]/`).hostname;
      assert.equal(canonical(text), canonical(fullForm(b)));
      if (!text.startsWith('::ffff:') || !text.includes('.')) assert.equal(`[${text}]`, canonical(fullForm(b)), 'RFC 5952: lowercase, no leading zeros, the first longest run of zeros as ::');
    }),
    3000,
  );
});
