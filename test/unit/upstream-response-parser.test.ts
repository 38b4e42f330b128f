// The instance's responses as the upstream pool reads them (src/proxy/upstream/response-parser.ts):
// a property over every framing split at any byte, and the malformed forms that must close the connection.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ResponseParser, type ResponseFields, type ResponseHeaders } from '../../src/proxy/upstream/response-parser.ts';
import { isHopByHop } from '../../src/proxy/headers.ts';
import { requestHead } from '../../src/proxy/upstream/request-head.ts';
import { createRequire } from 'node:module';
import { checkProperty, withOddBytes } from '../helpers/property.ts';

interface Parsed {
  heads: { status: number; reason: string; headers: ResponseHeaders; list: string[]; fields: ResponseFields }[];
  body: Buffer;
  done: boolean;
  reusable: boolean;
  /** Index in the whole input where parsing stopped (the response's end when done). */
  stoppedAt: number;
}

/** Feed `pieces` one by one, as reads would arrive (each copied into a reused buffer, as the pool does). */
function parse(method: string, pieces: Buffer[], eof = false): Parsed {
  const p = new ResponseParser();
  const out: Parsed = { heads: [], body: Buffer.alloc(0), done: false, reusable: false, stoppedAt: 0 };
  const bodies: Buffer[] = [];
  p.expect(method, {
    onHead: (status, reason, fields) => out.heads.push({ status, reason, headers: fields.toObject(), list: fields.list, fields }),
    onBody: (chunk) => bodies.push(Buffer.from(chunk)),
  });
  const shared = Buffer.alloc(Math.max(16 * 1024, ...pieces.map((x) => x.length)));
  let offset = 0;
  for (const piece of pieces) {
    piece.copy(shared);
    const view = shared.subarray(0, piece.length);
    const used = p.execute(view);
    shared.fill(0x78); // a later read overwrites the buffer: nothing may still point into it
    offset += used;
    if (p.done) {
      out.stoppedAt = offset;
      break;
    }
  }
  if (!p.done && eof) p.finish();
  out.done = p.done;
  out.reusable = p.done && p.reusable;
  out.body = Buffer.concat(bodies);
  if (!out.done) out.stoppedAt = offset;
  return out;
}

/** Split `bytes` at the given cut points. */
function cut(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of points) {
    if (c > prev) out.push(bytes.subarray(prev, c));
    prev = Math.max(prev, c);
  }
  if (prev < bytes.length) out.push(bytes.subarray(prev));
  return out;
}

type Framing = 'length' | 'chunked' | 'close' | 'none';

const nameArb = fc.constantFrom('x-a', 'X-Request-Id', 'content-type', 'set-cookie', 'vary', 'Cache-Control', 'constructor', 'toString');
const valueArb = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 20 }).map((v) => v.trim());
const responseArb = fc.record({
  status: fc.constantFrom(200, 201, 206, 301, 404, 500, 503),
  reason: fc.constantFrom('OK', 'Not Found', '', 'Any Reason Phrase'),
  informational: fc.constantFrom(0, 1, 2),
  fields: fc.array(fc.tuple(nameArb, valueArb), { maxLength: 8 }),
  body: fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)),
  framing: fc.constantFrom<Framing>('length', 'chunked', 'close'),
  chunkSizes: fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 8 }),
  trailers: fc.boolean(),
  close: fc.boolean(),
  trailing: fc.constantFrom('', 'HTTP/1.1 200 OK\r\n'),
  cuts: fc.array(fc.nat(), { maxLength: 12 }),
});

type Response = typeof responseArb extends fc.Arbitrary<infer T> ? T : never;

function serialize(r: Response): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < r.informational; i++) parts.push(Buffer.from('HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n', 'latin1'));
  let head = `HTTP/1.1 ${r.status}${r.reason === '' ? '' : ` ${r.reason}`}\r\n`;
  for (const [n, v] of r.fields) head += `${n}: ${v}\r\n`;
  if (r.close) head += 'Connection: close\r\n';
  if (r.framing === 'length') head += `Content-Length: ${r.body.length}\r\n`;
  if (r.framing === 'chunked') head += 'Transfer-Encoding: chunked\r\n';
  parts.push(Buffer.from(`${head}\r\n`, 'latin1'));
  if (r.framing === 'chunked') {
    let at = 0;
    let i = 0;
    while (at < r.body.length) {
      const n = Math.min(r.chunkSizes[i++ % r.chunkSizes.length]!, r.body.length - at);
      parts.push(Buffer.from(`${n.toString(16)}${i % 2 === 0 ? ';ext=1' : ''}\r\n`, 'latin1'), r.body.subarray(at, at + n), Buffer.from('\r\n'));
      at += n;
    }
    parts.push(Buffer.from(r.trailers ? '0\r\nx-checksum: abc\r\n\r\n' : '0\r\n\r\n', 'latin1'));
  } else {
    parts.push(r.body);
  }
  if (r.framing !== 'close') parts.push(Buffer.from(r.trailing, 'latin1'));
  return Buffer.concat(parts);
}

test('any response, split at any bytes: the same head and body, the end found exactly, reuse only when framed and kept alive', (t) => {
  checkProperty(
    t,
    fc.property(responseArb, (r) => {
      const bytes = serialize(r);
      const got = parse('GET', cut(bytes, r.cuts), r.framing === 'close');
      assert.equal(got.heads.length, 1);
      assert.equal(got.heads[0]!.status, r.status);
      assert.equal(got.heads[0]!.reason, r.reason);
      for (const [n, v] of r.fields) {
        const h = got.heads[0]!.headers[n.toLowerCase()];
        assert.ok(typeof h === 'string' ? h === v : Array.isArray(h) && h.includes(v), `${n}: ${v} in ${JSON.stringify(h)}`);
      }
      assert.ok(got.done, 'complete');
      assert.ok(got.body.equals(r.body), 'body bytes as sent');
      assert.equal(got.reusable, r.framing !== 'close' && !r.close);
      // Bytes after the response are left to the caller, never parsed as part of it.
      if (r.framing !== 'close') assert.equal(got.stoppedAt, bytes.length - r.trailing.length);
    }),
    400,
  );
});

interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  close(): void;
  [key: number]: unknown;
}
// Node's own binding of llhttp in strict mode (no lenient flags), as its HTTP client runs it.
const { HTTPParser } = createRequire(import.meta.url)('_http_common') as { HTTPParser: { new (): LlhttpParser; RESPONSE: number; kOnHeaders: number; kOnHeadersComplete: number; kOnMessageComplete: number } };

interface LlhttpHead {
  status: number;
  reason: string;
  headers: string[];
  complete: boolean;
  result: number | Error;
}

function llhttpResponse(bytes: Buffer): LlhttpHead {
  const p = new HTTPParser();
  p.initialize(HTTPParser.RESPONSE, {}, 80 * 1024, 0);
  const read: LlhttpHead = { status: 0, reason: '', headers: [], complete: false, result: 0 };
  p[HTTPParser.kOnHeaders] = (headers: string[]) => read.headers.push(...headers);
  p[HTTPParser.kOnHeadersComplete] = (_major: number, _minor: number, headers: string[] | undefined, _method: unknown, _url: unknown, status: number, reason: string) => {
    if (headers !== undefined) read.headers.push(...headers);
    read.status = status;
    read.reason = reason;
    return 0;
  };
  p[HTTPParser.kOnMessageComplete] = () => {
    read.complete = true;
  };
  read.result = p.execute(bytes);
  p.close();
  return read;
}

const pickOf = <T>(...xs: T[]): fc.Arbitrary<T> => fc.constantFrom(...xs);
/** Bytes parsers disagree on or refuse, among plain ones. */
const oddByte = pickOf('\x00', '\x01', '\x0b', '\x7f', '\x80', '\xa0', '\xff', '\t', ' ', '"', ':', '\r', '\n', ',', ';', '(', '@', 'a', '0');
const mutated = (plain: string[], maxOdd: number): fc.Arbitrary<string> => withOddBytes(plain, oddByte, maxOdd);
// Framing fields are left out: where baton deliberately differs (a repeated identical
// Content-Length is one length; Transfer-Encoding beside Content-Length is read as chunked
// and the connection not reused) the framing tests above and below say what it does.
const statusLineArb = fc.oneof(
  { weight: 6, arbitrary: pickOf('HTTP/1.1 200 OK', 'HTTP/1.0 404 Not Found', 'HTTP/1.1 200', 'HTTP/1.1 200 ', 'HTTP/1.1 503 Service Unavailable', 'HTTP/1.1 299 \xe9t\xe9', 'HTTP/1.1 999 x') },
  { weight: 2, arbitrary: mutated(['HTTP/1.1 200 OK', 'HTTP/1.0 301 Moved', 'HTTP/1.1 404 '], 2) },
);
const fieldNameArb = fc.oneof(
  { weight: 8, arbitrary: pickOf('Content-Type', 'content-type', 'Date', 'Set-Cookie', 'X-Request-Id', 'Vary', 'ETag', 'Cache-Control', "x-!#$%&'*+-.^_`|~") },
  // Hop-by-hop fields, and those the client's side adds when absent.
  { weight: 2, arbitrary: pickOf('Connection', 'Keep-Alive', 'Upgrade', 'TE', 'Trailer', 'Proxy-Connection', 'Strict-Transport-Security', 'DATE') },
  { weight: 2, arbitrary: mutated(['Content-Type', 'X-A', 'Server'], 1) },
);
const fieldValueArb = fc.oneof(
  { weight: 8, arbitrary: pickOf('text/html; charset=utf-8', 'a=1; Path=/; HttpOnly', 'W/"abc"', '', 'Tue, 01 Dec 2026 01:50:00 GMT', 'caf\xe9', 'v a l') },
  { weight: 2, arbitrary: mutated(['text/plain', 'a, b', 'x'], 2) },
);
const owsArb = fc.oneof({ weight: 10, arbitrary: fc.constant(' ') }, { weight: 2, arbitrary: pickOf('', '\t', '  \t ') });
const eolArb = fc.oneof({ weight: 30, arbitrary: fc.constant('\r\n') }, { weight: 1, arbitrary: pickOf('\n', '\r', '\r\r\n', '\r\n ', '\r\n\t') });
const responseHeadArb = fc
  .tuple(statusLineArb, eolArb, fc.array(fc.tuple(fieldNameArb, pickOf(':', ' :'), owsArb, fieldValueArb, owsArb, eolArb), { maxLength: 6 }))
  .map(([statusLine, eol, fields]) => {
    let text = `${statusLine}${eol}`;
    for (const [n, colon, ows1, v, ows2, e] of fields) text += `${n}${colon}${ows1}${v}${ows2}${e}`;
    return Buffer.from(`${text}Content-Length: 0\r\n\r\n`, 'latin1');
  });

test('a response head the pool takes is read by llhttp (strict, as Node\'s client) the same way: status, reason, fields, its end', (t) => {
  let taken = 0;
  let asIs = 0;
  checkProperty(
    t,
    fc.property(responseHeadArb, (bytes) => {
      let got: Parsed;
      try {
        got = parse('GET', [bytes]);
      } catch (err) {
        if ((err as { code?: string }).code === 'BATON_UPSTREAM_PROTOCOL') return;
        throw err;
      }
      if (got.heads.length === 0) return; // a 1xx: no final head in these bytes
      taken++;
      const read = llhttpResponse(bytes);
      const text = JSON.stringify(bytes.toString('latin1'));
      assert.equal(read.result, bytes.length, `llhttp refused what baton took: ${text}`);
      assert.ok(read.complete && got.done && got.stoppedAt === bytes.length, text);
      const head = got.heads[0]!;
      assert.equal(head.status, read.status, text);
      assert.equal(head.reason, read.reason, text);
      // llhttp's list in order, as baton's object groups it (lowercase names, repeats in order).
      const expected: ResponseHeaders = {};
      for (let i = 0; i < read.headers.length; i += 2) {
        const name = read.headers[i]!.toLowerCase();
        const value = read.headers[i + 1]!;
        const prev = expected[name];
        expected[name] = prev === undefined ? value : typeof prev === 'string' ? [prev, value] : [...prev, value];
      }
      assert.deepEqual({ ...head.headers }, expected, text);
      // The flat list the lean path writes from: llhttp's, in order, names lowercased.
      assert.deepEqual(head.list, read.headers.map((x, i) => (i % 2 === 0 ? x.toLowerCase() : x)), text);
      // The lines the lean path sends as they came: llhttp's fields but the hop-by-hop ones, in order.
      const lines = head.fields.lines;
      const names = head.list.filter((_, i) => i % 2 === 0);
      assert.equal(head.fields.hasDate, names.includes('date'), text);
      assert.equal(head.fields.hasHsts, names.includes('strict-transport-security'), text);
      assert.equal(head.fields.hasLength, names.includes('content-length'), text);
      if (lines === null) return;
      asIs++;
      const sent: string[] = [];
      for (const line of lines.split('\r\n').slice(0, -1)) {
        const colon = line.indexOf(':');
        assert.equal(line.slice(colon, colon + 2), ': ', text);
        sent.push(line.slice(0, colon).toLowerCase(), line.slice(colon + 2));
      }
      const endToEnd: string[] = [];
      for (let i = 0; i < read.headers.length; i += 2) {
        const name = read.headers[i]!.toLowerCase();
        if (!isHopByHop(name)) endToEnd.push(name, read.headers[i + 1]!);
      }
      assert.deepEqual(sent, endToEnd, text);
      assert.ok(lines.endsWith('\r\n') || lines === '', text);
    }),
    3000,
  );
  assert.ok(taken > 400, `only ${taken} heads taken`);
  assert.ok(asIs > 200, `only ${asIs} heads had their lines sent as they came`);
});

function fails(method: string, text: string, eof = false): string {
  try {
    parse(method, [Buffer.from(text, 'latin1')], eof);
  } catch (err) {
    assert.equal((err as { code?: string }).code, 'BATON_UPSTREAM_PROTOCOL');
    return (err as Error).message;
  }
  assert.fail(`parsed without error: ${JSON.stringify(text.slice(0, 100))}`);
}

test('ambiguous or malformed responses are errors (the connection is closed, nothing reaches the next request)', () => {
  const cases: [string, string, RegExp][] = [
    ['two different lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!', /Content-Length/],
    ['a signed length', 'HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello', /Content-Length/],
    ['a length with a list of differing values', 'HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello', /Content-Length/],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n', /header line/],
    ['space before the colon', 'HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n', /header name/],
    ['a bare LF inside the head', 'HTTP/1.1 200 OK\r\nX-A: a\nContent-Length: 0\r\n\r\n', /invalid characters|header/],
    ['a NUL in a value', 'HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n', /invalid characters/],
    ['not HTTP/1.x', 'HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n', /status line/],
    ['a two-digit status', 'HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n', /status line/],
    ['101 never asked for', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n', /101/],
    ['a chunk size that is not hex', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n', /chunk-size/],
    ['a chunk size too long', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n', /chunk-size/],
    ['chunk data longer than its size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n', /CRLF/],
    ['a chunk-size line ended by a bare LF', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n', /CRLF/],
  ];
  for (const [name, text, msg] of cases) assert.match(fails('GET', text), msg, name);
  assert.match(fails('GET', `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70 * 1024)}\r\n\r\n`), /over/);
  assert.match(fails('GET', 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello', true), /closed in the middle/);
});

test('clear but unusual framings: read as RFC 9112 6.3 says, and the connection is not reused', () => {
  // Transfer-Encoding next to Content-Length: chunked wins.
  let got = parse('GET', [Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n')]);
  assert.ok(got.done && got.body.toString() === 'hello' && !got.reusable);
  // A coding other than chunked last: read to the close.
  got = parse('GET', [Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc')], true);
  assert.ok(got.done && got.body.toString() === 'abc' && !got.reusable);
  // HTTP/1.0: reused only when it says keep-alive.
  assert.equal(parse('GET', [Buffer.from('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n')]).reusable, false);
  assert.equal(parse('GET', [Buffer.from('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n')]).reusable, true);
  // HEAD, 204, 304: no body whatever the fields say.
  got = parse('HEAD', [Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n')]);
  assert.ok(got.done && got.body.length === 0);
  assert.ok(parse('GET', [Buffer.from('HTTP/1.1 304 Not Modified\r\nContent-Length: 500\r\n\r\n')]).done);
  assert.ok(parse('GET', [Buffer.from('HTTP/1.1 204 No Content\r\n\r\n')]).done);
  // Identical repeated lengths are one length.
  got = parse('GET', [Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok')]);
  assert.ok(got.done && got.body.toString() === 'ok' && got.reusable);
  // __proto__ is never a key.
  got = parse('GET', [Buffer.from('HTTP/1.1 200 OK\r\n__proto__: x\r\nContent-Length: 0\r\n\r\n')]);
  assert.equal(Object.getPrototypeOf(got.heads[0]!.headers), Object.prototype);
});

test('the server\'s Keep-Alive timeout hint is read', () => {
  const p = new ResponseParser();
  p.expect('GET', { onHead: () => undefined, onBody: () => undefined });
  p.execute(Buffer.from('HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\nContent-Length: 0\r\n\r\n'));
  assert.equal(p.keepAliveHintMs, 5000);
});

test('request heads: Host first (or the instance address), framing by the body, what cannot be sent refused', () => {
  const h = requestHead({ method: 'GET', path: '/a?b', headers: ['Accept', '*/*', 'Host', 'example.com'], body: null }, '127.0.0.1:9');
  assert.equal(h.text, 'GET /a?b HTTP/1.1\r\nhost: example.com\r\nAccept: */*\r\n\r\n');
  assert.match(requestHead({ method: 'GET', path: '/', headers: [], body: null }, '[::1]:9').text, /^GET \/ HTTP\/1\.1\r\nhost: \[::1\]:9\r\n/);
  assert.match(requestHead({ method: 'POST', path: '/', headers: [], body: null }, 'h').text, /content-length: 0\r\n\r\n$/);
  const body = (async function* () {})();
  assert.match(requestHead({ method: 'POST', path: '/', headers: [], body }, 'h').text, /transfer-encoding: chunked\r\n\r\n$/);
  assert.match(requestHead({ method: 'PUT', path: '/', headers: ['Content-Length', '12'], body }, 'h').text, /content-length: 12\r\n\r\n$/);
  const refused: [string[], string, RegExp][] = [
    [['X-A', 'a\r\nInjected: 1'], '/', /invalid X-A header/],
    [['X A', 'a'], '/', /invalid header name/],
    [['Host', 'a', 'host', 'b'], '/', /duplicate host/],
    [['Content-Length', '1', 'content-length', '1'], '/', /duplicate content-length/],
    [['Content-Length', '-1'], '/', /invalid content-length/],
    [[], '/a b', /invalid request target/],
  ];
  for (const [headers, path, msg] of refused) {
    assert.throws(() => requestHead({ method: 'GET', path, headers, body: null }, 'h'), (err: Error & { code?: string }) => err.code === 'BATON_UPSTREAM_INVALID_REQUEST' && msg.test(err.message));
  }
});

test('a head whose end lies around or past the first KiB of a read is found, whole or split, with its body after it', () => {
  for (let pad = 960; pad < 1060; pad++) {
    const head = `HTTP/1.1 200 OK\r\nX-Pad: ${'p'.repeat(pad)}\r\nContent-Length: 5\r\n\r\n`;
    const bytes = Buffer.from(`${head}hello`, 'latin1');
    for (const pieces of [[bytes], cut(bytes, [head.length - 2]), cut(bytes, [1030]), cut(bytes, [head.length + 1])]) {
      const r = parse('GET', pieces);
      assert.equal(r.heads.length, 1, `pad ${pad}`);
      assert.deepEqual(r.heads[0]!.list, ['x-pad', 'p'.repeat(pad), 'content-length', '5'], `pad ${pad}`);
      assert.equal(r.body.toString('latin1'), 'hello', `pad ${pad}`);
      assert.equal(r.stoppedAt, bytes.length, `pad ${pad}`);
      assert.ok(r.done && r.reusable, `pad ${pad}`);
    }
  }
});
