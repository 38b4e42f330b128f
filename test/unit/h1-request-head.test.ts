// The lean path's request heads (src/proxy/h1/request-head.ts) against llhttp,
// the parser node:http uses: whatever the lean path takes, llhttp reads the same
// way (method, target, fields, keep-alive) and ends the message, with no body,
// exactly where the lean path starts the next request. What the lean path does
// not take goes to node:http unread, so it needs no check.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { checkProperty, latin1, withOddBytes } from '../helpers/property.ts';
import { Forwarding, HAND_OFF, INCOMPLETE, instanceRequest, parseLeanHead, type LeanHead } from '../../src/proxy/h1/request-head.ts';
import { DEFAULT_REQUEST_LIMITS } from '../../src/proxy/limits.ts';
import { nodeHeaders } from '../../src/proxy/h1/node-headers.ts';
import { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { forwardingLines, forwardRequestHeaders } from '../../src/proxy/headers.ts';
import { requestHead } from '../../src/proxy/upstream/request-head.ts';

interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): void;
  close(): void;
  [key: number]: unknown;
}
interface LlhttpModule {
  HTTPParser: { new (): LlhttpParser; REQUEST: number; kOnHeaders: number; kOnHeadersComplete: number; kOnBody: number; kOnMessageComplete: number };
  methods: string[];
}
// Node's own binding of llhttp (strict: no lenient flags), as its HTTP server runs it.
const { HTTPParser, methods } = createRequire(import.meta.url)('_http_common') as LlhttpModule;

interface LlhttpRead {
  method: string;
  url: string;
  headers: string[];
  upgrade: boolean;
  keepAlive: boolean;
  version: string;
  body: boolean;
  complete: boolean;
  result: number | Error;
}

function llhttp(bytes: Buffer): LlhttpRead {
  const p = new HTTPParser();
  p.initialize(HTTPParser.REQUEST, {}, DEFAULT_REQUEST_LIMITS.maxHeaderSize, 0);
  const read: LlhttpRead = { method: '', url: '', headers: [], upgrade: false, keepAlive: false, version: '', body: false, complete: false, result: 0 };
  p[HTTPParser.kOnHeaders] = (headers: string[], url: string) => {
    read.headers.push(...headers);
    read.url += url;
  };
  p[HTTPParser.kOnHeadersComplete] = (major: number, minor: number, headers: string[] | undefined, method: number, url: string | undefined, _s: unknown, _m: unknown, upgrade: boolean, keepAlive: boolean) => {
    if (headers !== undefined) read.headers.push(...headers);
    if (url !== undefined) read.url += url;
    read.method = methods[method] ?? '?';
    read.version = `${major}.${minor}`;
    read.upgrade = upgrade;
    read.keepAlive = keepAlive;
    return 0;
  };
  p[HTTPParser.kOnBody] = () => {
    read.body = true;
  };
  p[HTTPParser.kOnMessageComplete] = () => {
    read.complete = true;
  };
  read.result = p.execute(bytes);
  p.close();
  return read;
}

function lean(bytes: Buffer): LeanHead | typeof INCOMPLETE | typeof HAND_OFF {
  return parseLeanHead(bytes, 0, DEFAULT_REQUEST_LIMITS);
}

const pick = <T>(...xs: T[]): fc.Arbitrary<T> => fc.constantFrom(...xs);
/** Bytes that parsers disagree on or refuse, among plain ones. */
const oddByte = pick('\x00', '\x7f', '\x80', '\xff', '\t', ' ', '"', '#', '\\', '{', '<', '%', '\r', '\n', ',', ';', ':', '=', 'a', '0');
const piece = (plain: string[], maxOdd: number): fc.Arbitrary<string> => withOddBytes(plain, oddByte, maxOdd);

const methodArb = fc.oneof({ weight: 5, arbitrary: pick('GET', 'HEAD', 'DELETE', 'OPTIONS', 'POST', 'PUT', 'PATCH') }, { weight: 1, arbitrary: piece(['GET', 'POST', 'PUT', 'get', 'CONNECT', 'PRI', 'OPTIONS'], 1) });
const targetArb = fc.oneof({ weight: 4, arbitrary: pick('/', '/a/b?c=d&e=%20', '/x.js', '/?q=1#f') }, { weight: 2, arbitrary: piece(['/', '/path', '/a?b', '*', 'http://h/x', '/_baton/health'], 2) });
const versionArb = fc.oneof({ weight: 6, arbitrary: fc.constant('HTTP/1.1') }, { weight: 1, arbitrary: pick('HTTP/1.0', 'HTTP/2.0', 'http/1.1', 'HTTP/1.1 ', 'HTTP/1.10', 'HTTP/1.1\t') });
const nameArb = fc.oneof(
  { weight: 10, arbitrary: pick('Host', 'host', 'HOST', 'Accept', 'User-Agent', 'X-Forwarded-For', 'Cookie', 'Connection', 'x-a') },
  { weight: 2, arbitrary: pick('Content-Length', 'content-length', 'Transfer-Encoding', 'transfer-encoding', 'Expect', 'Upgrade', 'TE', 'Keep-Alive', 'Trailer') },
  { weight: 1, arbitrary: piece(['Host', 'Content-Length', 'Transfer-Encoding', 'X-A', 'Connection'], 1) },
);
const valueArb = fc.oneof(
  { weight: 10, arbitrary: pick('a.test', 'example.com:8080', '*/*', 'text/html, */*;q=0.8', 'close', 'keep-alive', 'Upgrade', 'chunked', '0', '5', 'x, close', 'websocket', '') },
  { weight: 2, arbitrary: piece(['a.test', 'chunked', '5', 'close', 'v a l'], 2) },
);
const sepArb = fc.oneof({ weight: 16, arbitrary: fc.constant(': ') }, { weight: 1, arbitrary: pick(':', ':\t', ' : ', ':   ', ' :') });
const eolArb = fc.oneof({ weight: 40, arbitrary: fc.constant('\r\n') }, { weight: 1, arbitrary: pick('\n', '\r', '\r\r\n', '\r\n ') });
const trailArb = fc.oneof({ weight: 12, arbitrary: fc.constant('') }, { weight: 1, arbitrary: pick(' ', '\t', '  \t') });

const headArb = fc
  .tuple(
    methodArb,
    targetArb,
    versionArb,
    eolArb,
    fc.array(fc.tuple(nameArb, sepArb, valueArb, trailArb, eolArb), { maxLength: 6 }),
    fc.oneof({ weight: 8, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    // A body announced by a Content-Length of its own length (sometimes fewer bytes than announced arrive), after the other fields.
    fc.option(fc.tuple(latin1({ maxLength: 40 }), fc.nat(3)), { freq: 2 }),
    pick('', 'GET / HTTP/1.1\r\n', 'hello', '\r\n'),
  )
  .map(([method, target, version, eol, fields, withHost, body, after]) => {
    let text = `${method} ${target} ${version}${eol}`;
    if (withHost) text += 'Host: a.test\r\n';
    for (const [n, sep, v, trail, e] of fields) text += `${n}${sep}${v}${trail}${e}`;
    if (body === null) return Buffer.from(`${text}\r\n${after}`, 'latin1');
    const [content, short] = body;
    const sent = short === 0 ? content.slice(0, Math.floor(content.length / 2)) : content;
    return Buffer.from(`${text}Content-Length: ${content.length}\r\n\r\n${sent}${short === 0 ? '' : after}`, 'latin1');
  });

test('a head the lean path takes is read by llhttp the same way, and its message ends where the lean path says: after its Content-Length, or at the empty line', (t) => {
  let taken = 0;
  let withBody = 0;
  let asIs = 0;
  checkProperty(
    t,
    fc.property(headArb, (bytes) => {
      const head = lean(bytes);
      if (head === INCOMPLETE || head === HAND_OFF) return;
      taken++;
      const text = JSON.stringify(bytes.toString('latin1'));
      const messageEnd = head.end + head.bodyLength;
      if (messageEnd > bytes.length) {
        // Not all of the body is here: llhttp takes every byte and waits for more.
        const partial = llhttp(bytes);
        assert.equal(partial.result, bytes.length, `llhttp refused or stopped early: ${text}`);
        assert.ok(!partial.complete, `llhttp ended the message before its Content-Length: ${text}`);
        return;
      }
      const read = llhttp(bytes.subarray(0, messageEnd));
      assert.equal(read.result, messageEnd, `llhttp refused or stopped early: ${text}`);
      assert.ok(read.complete, `llhttp did not end the message where the lean path does: ${text}`);
      assert.equal(read.body, head.bodyLength > 0);
      if (head.bodyLength > 0) withBody++;
      assert.equal(read.upgrade, false);
      assert.equal(read.version, '1.1');
      assert.equal(read.method, head.method);
      assert.equal(read.url, head.url);
      assert.deepEqual(read.headers, head.rawHeaders);
      assert.equal(read.keepAlive, !head.close);
      const hosts = head.rawHeaders.filter((_, i) => i % 2 === 0 && head.rawHeaders[i]!.toLowerCase() === 'host');
      assert.equal(hosts.length, 1);
      assert.equal(head.host, head.rawHeaders[head.rawHeaders.findIndex((n, i) => i % 2 === 0 && n.toLowerCase() === 'host') + 1]);
      // The instance's request skips requestHead's checks for a head read here (`checked`): they would all pass.
      const out = { method: head.method, path: head.url, headers: forwardRequestHeaders(head.rawHeaders, { address: '127.0.0.1', proto: 'http', trusted: true }), body: head.bodyLength > 0 ? Readable.from([bytes.subarray(head.end, messageEnd)]) : null };
      assert.equal(requestHead({ ...out, checked: true }, 'h').text, requestHead(out, 'h').text);
      // The instance's head as the lean path makes it (the client's lines as they came when
      // no rewrite touches them) is the head of the rewrite field by field, trusted client or not.
      if (head.fields !== null) asIs++;
      for (const trusted of [false, true]) {
        const facts = { address: '127.0.0.1', proto: 'http' as const, trusted };
        const rewritten: string = requestHead({ ...out, headers: forwardRequestHeaders(head.rawHeaders, facts) }, 'h').text;
        assert.equal(requestHead({ ...instanceRequest(head, new Forwarding(facts), undefined), body: out.body }, 'h').text, rewritten, text);
      }
    }),
    3000,
  );
  assert.ok(withBody > 20, `only ${withBody} heads with a body ended`);
  assert.ok(asIs > 200, `only ${asIs} heads had their lines sent as they came`);
  // Most generated heads are plain ones: the property was not checked on nothing.
  assert.ok(taken > 400, `only ${taken} heads taken`);
});

test('the plain forms are taken, bodies of one Content-Length too; Transfer-Encoding, two lengths, upgrades, Expect, HTTP/1.0, obs-fold, bare LF and odd bytes go to node:http', () => {
  const h = (s: string) => lean(Buffer.from(s, 'latin1'));
  const ok = h('GET /a?b=1 HTTP/1.1\r\nHost: a.test\r\nAccept: text/plain\r\nX-A:  v  \r\n\r\nGET / HTTP/1.1\r\n');
  assert.ok(typeof ok === 'object');
  assert.deepEqual(ok.rawHeaders, ['Host', 'a.test', 'Accept', 'text/plain', 'X-A', 'v']);
  assert.equal(ok.accept, 'text/plain');
  assert.equal(ok.end, 'GET /a?b=1 HTTP/1.1\r\nHost: a.test\r\nAccept: text/plain\r\nX-A:  v  \r\n\r\n'.length);
  const post = h('POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET');
  assert.ok(typeof post === 'object' && post.method === 'POST' && post.bodyLength === 5);
  const empty = h('POST /f HTTP/1.1\r\nHost: a\r\n\r\n');
  assert.ok(typeof empty === 'object' && empty.bodyLength === 0);
  const close = h('HEAD / HTTP/1.1\r\nhost: a\r\nConnection: keep-alive, Close\r\n\r\n');
  assert.ok(typeof close === 'object' && close.close && close.method === 'HEAD');
  assert.equal(h('GET / HTTP/1.1\r\nHost: a\r\n'), INCOMPLETE);
  for (const s of [
    'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx',
    'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx',
    'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 1\r\n\r\nx',
    'POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456\r\n\r\n',
    'CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n',
    'GET / HTTP/1.0\r\nHost: a\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n',
    'GET / HTTP/1.1\nHost: a\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n',
    'GET / HTTP/1.1\r\nHost : a\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
    'GET / HTTP/1.1\r\nX: b\r\n\r\n',
    'GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n',
    'GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: \xe9\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\x00\r\n\r\n',
    `GET /${'a'.repeat(DEFAULT_REQUEST_LIMITS.maxUrlLength)} HTTP/1.1\r\nHost: a\r\n\r\n`,
    `GET / HTTP/1.1\r\nHost: a\r\n${'X: y\r\n'.repeat(DEFAULT_REQUEST_LIMITS.maxHeaders)}\r\n`,
  ]) {
    assert.equal(h(s), HAND_OFF, JSON.stringify(s));
  }
  assert.equal(h(`GET / HTTP/1.1\r\nHost: a\r\nX: ${'v'.repeat(DEFAULT_REQUEST_LIMITS.maxHeaderSize)}`), HAND_OFF);
});

test('nodeHeaders gives what node:http gives as req.headers for the same raw list (repeats, case, cookies)', (t) => {
  const names = ['Cookie', 'cookie', 'Host', 'HOST', 'X-User', 'x-user', 'User-Agent', 'Authorization', 'Accept', 'Set-Cookie', 'x-canary', 'Content-Type', 'If-None-Match', 'Referer'];
  checkProperty(
    t,
    fc.property(fc.array(fc.tuple(fc.constantFrom(...names), fc.constantFrom('a', 'b=1', '', 'v, w', 'c=2; d=3')), { maxLength: 10 }), (pairs) => {
      const raw = pairs.flat();
      const msg = new IncomingMessage(null as never) as IncomingMessage & { _addHeaderLines(h: string[], n: number): void };
      msg._addHeaderLines(raw, raw.length);
      assert.deepEqual({ ...nodeHeaders(raw) }, { ...msg.headers });
    }),
    1000,
  );
});

test("a connection's Forwarding gives this hop's lines for each request's Host, made again when the Host changes", () => {
  const facts = { address: '2001:db8::1', proto: 'https' as const, trusted: false };
  const forwarding = new Forwarding(facts);
  for (const host of ['a.test', 'a.test', 'b.test:8443', 'a.test', 'q"uote.test']) assert.equal(forwarding.lines(host), forwardingLines(host, facts), host);
});

test('a head whose end lies around or past the first 4 KiB read into one string is found, with what follows it left for the next request', () => {
  for (let pad = 4000; pad < 4110; pad++) {
    const head = `GET /p HTTP/1.1\r\nHost: a\r\nX-Pad: ${'p'.repeat(pad)}\r\n\r\n`;
    for (const after of ['', 'GET / HTTP/1.1\r\n', 'x'.repeat(5000)]) {
      const parsed = lean(Buffer.from(head + after, 'latin1'));
      assert.ok(typeof parsed === 'object', `pad ${pad}, ${after.length} bytes after`);
      assert.equal(parsed.end, head.length, `pad ${pad}`);
      assert.deepEqual(parsed.rawHeaders, ['Host', 'a', 'X-Pad', 'p'.repeat(pad)], `pad ${pad}`);
      assert.equal(parsed.url, '/p');
    }
    assert.equal(lean(Buffer.from(head.slice(0, -1), 'latin1')), INCOMPLETE, `pad ${pad}, last byte missing`);
  }
  const limit = DEFAULT_REQUEST_LIMITS.maxHeaderSize;
  assert.equal(lean(Buffer.from(`GET / HTTP/1.1\r\nHost: a\r\nX: ${'v'.repeat(limit)}\r\n\r\n`, 'latin1')), HAND_OFF, 'over the limit, whole');
});
