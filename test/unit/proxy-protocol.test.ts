import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIPv6, parseProxyHeader, V2_MAX_BODY } from '../../src/proxy/proxy-protocol.ts';

const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

function v2(verCmd: number, fam: number, body: number[]): Buffer {
  return Buffer.from([...SIG, verCmd, fam, body.length >> 8, body.length & 0xff, ...body]);
}

test('v1: TCP4, TCP6 and UNKNOWN; the length covers the CRLF; the rest is left alone', () => {
  const line = 'PROXY TCP4 203.0.113.9 10.0.0.1 56324 443\r\n';
  assert.deepEqual(parseProxyHeader(Buffer.from(line + 'GET / HTTP/1.1\r\n')), { kind: 'header', header: { source: '203.0.113.9', tls: false }, length: line.length });
  assert.deepEqual(parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::9 ::1 1 2\r\n')), { kind: 'header', header: { source: '2001:db8::9', tls: false }, length: 32 });
  assert.deepEqual(parseProxyHeader(Buffer.from('PROXY UNKNOWN ff ee 1 2\r\n')), { kind: 'header', header: { source: null, tls: false }, length: 25 });
});

test('v1: incomplete until the CRLF, invalid past 107 bytes or when malformed', () => {
  for (const partial of ['P', 'PROX', 'PROXY ', 'PROXY TCP4 203.0.113.9 10.0.0.1 1 2', 'PROXY TCP4 203.0.113.9 10.0.0.1 1 2\r']) {
    assert.deepEqual(parseProxyHeader(Buffer.from(partial)), { kind: 'incomplete' }, partial);
  }
  const bad = ['GET / HTTP/1.1\r\n', 'PROXI TCP4', 'PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n', 'PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n', 'PROXY TCP4 1.2.3.4 ::1 1 2\r\n', 'PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n', 'PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n', 'PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n', `PROXY UNKNOWN ${'x'.repeat(100)}`];
  for (const b of bad) assert.equal(parseProxyHeader(Buffer.from(b)).kind, 'invalid', b);
});

test('v2: PROXY over TCP, LOCAL, the TLS flag, lengths and malformed blocks', () => {
  const inet = [192, 0, 2, 33, 10, 0, 0, 1, 0x1f, 0x90, 0x00, 0x50];
  const h = v2(0x21, 0x11, inet);
  assert.deepEqual(parseProxyHeader(Buffer.concat([h, Buffer.from('GET')])), { kind: 'header', header: { source: '192.0.2.33', tls: false }, length: 28 });
  // Incomplete at every cut.
  for (let n = 1; n < h.length; n++) assert.deepEqual(parseProxyHeader(h.subarray(0, n)), { kind: 'incomplete' }, `${n} bytes`);
  // LOCAL, UDP and UNSPEC name no client.
  assert.deepEqual(parseProxyHeader(v2(0x20, 0x11, inet)), { kind: 'header', header: { source: null, tls: false }, length: 28 });
  assert.deepEqual(parseProxyHeader(v2(0x21, 0x12, inet)), { kind: 'header', header: { source: null, tls: false }, length: 28 });
  assert.deepEqual(parseProxyHeader(v2(0x21, 0x00, [])), { kind: 'header', header: { source: null, tls: false }, length: 16 });
  // IPv6 with an SSL TLV (client used TLS) and an unrelated TLV.
  const inet6 = [0x20, 0x01, 0x0d, 0xb8, ...new Array<number>(11).fill(0), 0x09, ...new Array<number>(16).fill(0), 0, 1, 0, 2];
  const tlvs = [0x04, 0x00, 0x01, 0x77, 0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0];
  assert.deepEqual(parseProxyHeader(v2(0x21, 0x21, [...inet6, ...tlvs])).kind === 'header' && (parseProxyHeader(v2(0x21, 0x21, [...inet6, ...tlvs])) as { header: unknown }).header, { source: '2001:db8::9', tls: true });
  // SSL TLV without the client flag: not TLS.
  const noSsl = parseProxyHeader(v2(0x21, 0x11, [...inet, 0x20, 0x00, 0x05, 0x00, 0, 0, 0, 0]));
  assert.equal(noSsl.kind === 'header' && noSsl.header.tls, false);
  const bad: [string, Buffer][] = [
    ['version 1', v2(0x11, 0x11, inet)],
    ['command 2', v2(0x22, 0x11, inet)],
    ['family 4', v2(0x21, 0x41, inet)],
    ['short IPv4 block', v2(0x21, 0x11, inet.slice(0, 8))],
    ['short IPv6 block', v2(0x21, 0x21, inet)],
    ['truncated TLV', v2(0x21, 0x11, [...inet, 0x20, 0x00])],
    ['TLV longer than the block', v2(0x21, 0x11, [...inet, 0x20, 0x00, 0x09, 0x01])],
    ['bad signature', Buffer.from([...SIG.slice(0, 11), 0x0b, 0x21, 0x11, 0, 0])],
    ['too long', Buffer.from([...SIG, 0x21, 0x11, (V2_MAX_BODY + 1) >> 8, (V2_MAX_BODY + 1) & 0xff])],
  ];
  for (const [what, b] of bad) assert.equal(parseProxyHeader(b).kind, 'invalid', what);
});

test('formatIPv6: RFC 5952 text', () => {
  const f = (hex: string): string => formatIPv6(Buffer.from(hex.replace(/ /g, ''), 'hex'));
  assert.equal(f('2001 0db8 0000 0000 0000 0000 0000 0009'), '2001:db8::9');
  assert.equal(f('0000 0000 0000 0000 0000 0000 0000 0001'), '::1');
  assert.equal(f('0000 0000 0000 0000 0000 0000 0000 0000'), '::');
  assert.equal(f('2001 0db8 0000 0001 0000 0000 0001 0001'), '2001:db8:0:1::1:1');
  assert.equal(f('2001 0db8 0000 0001 0001 0001 0001 0001'), '2001:db8:0:1:1:1:1:1');
  assert.equal(f('0000 0000 0000 0000 0000 ffff c000 0221'), '::ffff:192.0.2.33');
  assert.equal(f('fe80 0000 0000 0000 0000 0000 0000 0000'), 'fe80::');
});
