// A bounded run of random and mutated bytes at the TLS listener, over HTTP/2
// (after the connection preface) and HTTP/1.1: no crash, no uncaught error,
// and the listener still answers a normal client afterwards. The generator is
// seeded (printed; the same seed every run, so a run is deterministic), and
// BATON_FUZZ_SEED replays or explores another. test/integration/fuzz-listeners.test.ts
// does the same at a real daemon, plain listener included, with its memory.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import tls from 'node:tls';
import { CertificateStore } from '../../src/tls/index.ts';
import { silentLogger } from '../../src/core/log.ts';
import { service, startProxy, startServer, target, withTimeout } from '../fixtures/proxy-harness.ts';
import { listenTls, makeCa, type TestCa } from '../fixtures/tls-certs.ts';

/** mulberry32: small, seeded, good enough to spread bytes. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

/** A valid HEADERS frame for GET https://a.test/ (HPACK: indexed :method, :path, :scheme; literal :authority). */
function validHeaders(stream: number): Buffer {
  const authority = Buffer.from('a.test');
  const block = Buffer.concat([Buffer.from([0x82, 0x84, 0x87, 0x41, authority.length]), authority]);
  return frame(0x1, 0x5, stream, block);
}

function mutate(buf: Buffer, r: () => number): Buffer {
  const out = Buffer.from(buf);
  const n = 1 + Math.floor(r() * 4);
  for (let i = 0; i < n; i++) out[Math.floor(r() * out.length)] = Math.floor(r() * 256);
  return out;
}

function randomBytes(n: number, r: () => number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

/** One TLS connection that sends `chunks`, then waits (bounded) for the server to close or stays silent; never throws. */
function blast(port: number, ca: TestCa, alpn: string, chunks: Buffer[], waitMs = 500): Promise<void> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca: ca.caPem, ALPNProtocols: [alpn] }, () => {
      for (const c of chunks) s.write(c);
    });
    s.on('data', () => undefined);
    s.on('error', () => undefined);
    // Long enough for a well-formed request to be answered; the server may close first.
    const timer = setTimeout(() => s.destroy(), waitMs);
    s.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function fuzzTarget(t: TestContext): Promise<{ port: number; ca: TestCa; hits: () => number }> {
  const ca = makeCa(t);
  const a = ca.write('a', ['a.test']);
  const store = new CertificateStore({ logger: silentLogger });
  await store.loadFiles([{ hosts: ['a.test'], certFile: a.certFile, keyFile: a.keyFile, isDefault: true }]);
  t.after(() => store.close());
  let hits = 0;
  const up = await startServer(t, (req, res) => {
    hits++;
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  const { proxy } = await startProxy(t, { headersTimeoutMs: 1000 });
  proxy.apply({ services: [service('s', [target('u', up.port)], { isDefault: true })] });
  const port = await listenTls(proxy, store, { handshakeTimeoutMs: 2000, maxConnectionsPerClient: 1000 });
  return { port, ca, hits: () => hits };
}

test('random and mutated HTTP/2 frames and HTTP/1.1 requests over TLS: no crash, the listener still serves', async (t) => {
  const seed = Number(process.env['BATON_FUZZ_SEED'] ?? 753_001);
  t.diagnostic(`seed ${seed} (replay with BATON_FUZZ_SEED=${seed})`);
  const r = rng(seed);
  const { port, ca, hits } = await fuzzTarget(t);
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown): void => void uncaught.push(err);
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  t.after(() => {
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
  });

  const settings = frame(0x4, 0, 0, Buffer.alloc(0));
  const validH1 = Buffer.from('POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', 'latin1');
  const runs: Promise<void>[] = [];
  for (let i = 0; i < 300; i++) {
    const kind = i % 3;
    if (kind === 0) {
      // HTTP/2: preface and SETTINGS, then frames of random type/flags/stream/payload.
      const frames = [PREFACE, settings];
      for (let k = 0; k < 1 + Math.floor(r() * 5); k++) {
        frames.push(frame(Math.floor(r() * 12), Math.floor(r() * 256), Math.floor(r() * 8), randomBytes(Math.floor(r() * 64), r)));
      }
      runs.push(blast(port, ca, 'h2', frames));
    } else if (kind === 1) {
      // HTTP/2: a valid request with a few bytes changed (header block, length, flags).
      // One in ten is left intact: the control that shows requests do get through this way.
      runs.push(blast(port, ca, 'h2', [PREFACE, settings, mutate(validHeaders(1), r), validHeaders(3)]));
    } else {
      // HTTP/1.1 over TLS: a valid request with bytes changed, or random bytes.
      runs.push(blast(port, ca, 'http/1.1', [r() < 0.7 ? mutate(validH1, r) : randomBytes(1 + Math.floor(r() * 200), r)]));
    }
    if (runs.length >= 20) await Promise.all(runs.splice(0));
  }
  await Promise.all(runs);
  const fuzzed = hits();
  // Controls: the same raw path with intact bytes reaches the instance (so the fuzzing really reached the request path).
  const controls: Promise<void>[] = [];
  for (let i = 0; i < 5; i++) {
    controls.push(blast(port, ca, 'h2', [PREFACE, settings, validHeaders(1), validHeaders(3)], 3000));
    controls.push(blast(port, ca, 'http/1.1', [Buffer.from('GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n')], 3000));
  }
  await Promise.all(controls);
  // At least: a fuzzed request still on its way may land meanwhile.
  assert.ok(hits() - fuzzed >= 15, `${hits() - fuzzed} of 15 intact control requests reached the instance`);
  assert.deepEqual(uncaught, [], 'no uncaught exception or unhandled rejection');

  // A normal client, both protocols, afterwards.
  const before = hits();
  const session = http2.connect(`https://127.0.0.1:${port}`, { ca: ca.caPem, servername: 'a.test' });
  t.after(() => session.destroy());
  const body = await withTimeout(new Promise<string>((resolve, reject) => {
    const req = session.request({ ':path': '/', ':authority': 'a.test' });
    let b = '';
    req.on('data', (d: Buffer) => (b += d));
    req.on('end', () => resolve(b));
    req.on('error', reject);
  }), 5000, 'an h2 request after the fuzzing');
  assert.equal(body, 'ok');
  assert.equal(hits(), before + 1);
  t.diagnostic(`${fuzzed} requests from the 300 fuzzed connections reached the instance (mutations that stayed well-formed)`);
});
