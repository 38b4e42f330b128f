// Header processing end to end, as a property (fast-check, fixed seed): random
// request heads sent as raw bytes to the real proxy (HTTP/1.1) and through
// Node's HTTP/2 client over TLS, and what the instance's own parser receives
// compared with the model of the rules (test/helpers/header-model.ts). This
// covers what the unit properties cannot: Node's parser before baton, the upstream
// client's serialisation after it, the HTTP/2 adaptation (:authority, split cookies),
// and that every byte of a value arrives as sent.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import fc from 'fast-check';
import { CertificateStore } from '../../src/tls/index.ts';
import { silentLogger } from '../../src/core/log.ts';
import { service, startProxy, startServer, target, withTimeout } from '../fixtures/proxy-harness.ts';
import { listenTls, makeCa } from '../fixtures/tls-certs.ts';
import { checkAsyncProperty } from '../helpers/property.ts';
import { forwardedModel, pairs } from '../helpers/header-model.ts';

const HOST = 'site.test';
const CLIENT = { address: '127.0.0.1', proto: 'http' as const, trusted: false };

const TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".split('');
/**
 * Names a valid request may carry without changing its framing or its kind: no
 * Host (one is sent), Content-Length, Transfer-Encoding, Expect or Upgrade.
 */
const NAMES = ['Connection', 'Keep-Alive', 'Proxy-Connection', 'TE', 'Trailer', 'X-Forwarded-For', 'X-Forwarded-Proto', 'X-Forwarded-Host', 'Forwarded', 'Accept', 'Cookie', 'User-Agent', 'X-Request-Id', 'hosx', 'tx', '__proto__', 'constructor'];
const nameArb = fc.oneof(fc.mixedCase(fc.constantFrom(...NAMES)), fc.string({ unit: fc.constantFrom(...TCHAR), minLength: 1, maxLength: 16 }).filter((n) => !/^(host|content-length|transfer-encoding|expect|upgrade|connection)$/i.test(n)));
/** Field content: visible ASCII, obs-text (0x80-0xff) and inner spaces or tabs; none at either end (the parser trims those). */
const visible = fc.oneof(fc.integer({ min: 0x21, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff })).map((c) => String.fromCharCode(c));
const valueArb = fc.oneof(
  fc.constant(''),
  fc.tuple(visible, fc.string({ unit: fc.oneof({ arbitrary: visible, weight: 8 }, { arbitrary: fc.constantFrom(' ', '\t'), weight: 1 }), maxLength: 20 }), visible).map(([a, m, b]) => `${a}${m}${b}`),
);
/** A Connection value nominating some of `names` (never "upgrade": that would make the request an upgrade). */
function connectionArb(names: string[]): fc.Arbitrary<string> {
  return fc.shuffledSubarray([...names, 'keep-alive', 'close', 'X-Other']).map((parts) => parts.join(', '));
}
const headsArb = fc
  .array(fc.tuple(nameArb, valueArb), { maxLength: 10 })
  .chain((lines) =>
    fc.tuple(fc.constant(lines), fc.option(connectionArb(lines.map(([n]) => n)), { nil: undefined }), fc.nat(), fc.mixedCase(fc.constant('host'))),
  )
  .map(([lines, connection, at, hostName]) => {
    const all: [string, string][] = [...lines];
    if (connection !== undefined && connection !== '') all.splice(at % (all.length + 1), 0, ['Connection', connection]);
    all.splice(at % (all.length + 1), 0, [hostName, HOST]);
    return all;
  });

/** The proxy in front of an instance that answers with the raw header list it received, as JSON. */
async function echoProxy(t: TestContext): Promise<{ port: number; tlsPort: number; caPem: string }> {
  const up = await startServer(t, (req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(req.rawHeaders));
  });
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('u', up.port)], { hosts: [HOST] })] });
  const ca = makeCa(t);
  const files = ca.write('site', [HOST]);
  const store = new CertificateStore({ logger: silentLogger });
  await store.loadFiles([{ hosts: [HOST], certFile: files.certFile, keyFile: files.keyFile, isDefault: true }]);
  t.after(() => store.close());
  const tlsPort = await listenTls(proxy, store);
  return { port, tlsPort, caPem: ca.caPem };
}

/** Send one request head as raw latin1 bytes on a fresh connection; the response's status and body. */
function rawRequest(port: number, lines: [string, string][]): Promise<{ status: number; body: string }> {
  const head = `GET /echo HTTP/1.1\r\n${lines.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`;
  return withTimeout(
    new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => s.write(Buffer.from(head, 'latin1')));
      let got = Buffer.alloc(0);
      const done = (): void => {
        const end = got.indexOf('\r\n\r\n');
        if (end < 0) return;
        const headText = got.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length: (\d+)/i.exec(headText)?.[1] ?? NaN);
        if (got.length < end + 4 + length) return;
        s.destroy();
        resolve({ status: Number(headText.slice(9, 12)), body: got.subarray(end + 4, end + 4 + length).toString('utf8') });
      };
      s.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        done();
      });
      s.on('error', reject);
      s.on('close', () => reject(new Error(`connection closed before a whole response: ${JSON.stringify(got.toString('latin1'))}`)));
    }),
    10_000,
    'a response from the proxy',
  );
}

/**
 * A field list as it is compared: names lowercased (a name's case means nothing,
 * and the unit properties check that baton itself keeps it), Host first (the upstream
 * client writes "host" right after the request line; the order of fields of different
 * names is not significant, RFC 9110 5.3), and without what the upstream client adds to every
 * request it sends (its framing of the upstream connection).
 */
function comparable(raw: [string, string][]): [string, string][] {
  const lower = raw.map(([n, v]): [string, string] => [n.toLowerCase(), v]).filter(([n, v]) => !(n === 'connection' && (v === 'keep-alive' || v === 'close')));
  return [...lower.filter(([n]) => n === 'host'), ...lower.filter(([n]) => n !== 'host')];
}

test('HTTP/1.1 end to end: the instance receives exactly the fields the rules keep, every byte of each value as sent', async (t) => {
  const { port } = await echoProxy(t);
  await checkAsyncProperty(
    t,
    fc.asyncProperty(headsArb, async (lines) => {
      const { status, body } = await rawRequest(port, lines);
      assert.equal(status, 200, body);
      assert.deepEqual(comparable(pairs(JSON.parse(body) as string[])), comparable(forwardedModel(lines.flat(), CLIENT, false)));
    }),
    250,
  );
});

test('HTTP/2 end to end: :authority becomes the Host, split cookies arrive as one, the rest of the fields as sent', async (t) => {
  const { tlsPort, caPem } = await echoProxy(t);
  const session = http2.connect(`https://127.0.0.1:${tlsPort}`, { ca: caPem, servername: HOST });
  t.after(() => session.close());
  // HTTP/2 names are lowercase; its connection-specific fields are refused by the client itself.
  // No all-digit names: a JavaScript object (the client's headers) lists those first, whatever the order they were set in.
  const h2Name = fc.oneof(fc.constantFrom('accept', 'user-agent', 'x-request-id', 'x-forwarded-for', 'forwarded', 'x-forwarded-host', 'hosx'), fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-_'.split('')), minLength: 1, maxLength: 12 }).filter((n) => !['host', 'connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'http2-settings', 'content-length', 'cookie', 'expect', 'trailer'].includes(n) && !/^\d+$/.test(n)));
  const asciiValue = fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 16 });
  await checkAsyncProperty(
    t,
    fc.asyncProperty(
      fc.uniqueArray(fc.tuple(fc.oneof({ arbitrary: h2Name, weight: 20 }, { arbitrary: fc.constantFrom('__proto__', 'constructor'), weight: 1 }), asciiValue), { maxLength: 8, selector: ([n]) => n }),
      fc.array(fc.string({ unit: fc.constantFrom(...'abcXYZ019='.split('')), minLength: 1, maxLength: 8 }).map((v) => `c${v}`), { maxLength: 3 }),
      async (fields, cookies) => {
        // No prototype: a field named "__proto__" is then a field like any other.
        const headers: http2.OutgoingHttpHeaders = Object.assign(Object.create(null) as http2.OutgoingHttpHeaders, { ':path': '/echo', ':authority': HOST });
        for (const [n, v] of fields) headers[n] = v;
        if (cookies.length > 0) headers['cookie'] = cookies;
        const body = await withTimeout(
          new Promise<string>((resolve, reject) => {
            const req = session.request(headers);
            let b = '';
            req.setEncoding('utf8');
            req.on('data', (d: string) => (b += d));
            req.on('end', () => resolve(b));
            req.on('error', reject);
          }),
          10_000,
          'an HTTP/2 response',
        );
        // What the client sent, as the HTTP/1.1 rules see it: Host first, the fields, cookies joined (RFC 9113 8.2.3).
        const sent: [string, string][] = [['host', HOST], ...fields];
        if (cookies.length > 0) sent.push(['cookie', cookies.join('; ')]);
        assert.deepEqual(comparable(pairs(JSON.parse(body) as string[])), comparable(forwardedModel(sent.flat(), { ...CLIENT, proto: 'https' }, false)));
      },
    ),
    150,
  );
});
