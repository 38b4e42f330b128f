import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Readable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import { service, startApp, startProxy, target, withTimeout } from '../fixtures/proxy-harness.ts';

const SIZE = 200 * 1024 * 1024;
/** RSS growth allowed for the test process (client + proxy) while 200 MB pass through. */
const MAX_RSS_GROWTH = 64 * 1024 * 1024;

// A full GC on demand, so the RSS peak shows what is retained rather than how lazily garbage is collected.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Track the peak RSS of this process while `work` runs (collecting garbage every 50 ms). */
async function peakRssDuring<T>(work: () => Promise<T>): Promise<{ result: T; growth: number }> {
  gc();
  const base = process.memoryUsage.rss();
  let peak = base;
  const sampler = setInterval(() => {
    gc();
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 50);
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { result, growth: peak - base };
  } finally {
    clearInterval(sampler);
  }
}

/** A body of `size` bytes made from one reused 64 KiB chunk, produced on demand (backpressure-driven). */
function generated(size: number): Readable {
  const chunk = Buffer.alloc(64 * 1024, 98);
  let left = size;
  return new Readable({
    read() {
      const n = Math.min(left, chunk.length);
      left -= n;
      this.push(n === 0 ? null : n === chunk.length ? chunk : chunk.subarray(0, n));
    },
  });
}

test('200 MB download and chunked upload stream through in constant memory', async (t) => {
  const app = await startApp(t);
  const { proxy, port } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('a', app.port)], { isDefault: true })] });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());

  const download = await peakRssDuring(() =>
    withTimeout(
      new Promise<number>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: `/download?bytes=${SIZE}`, agent }, (res) => {
            assert.equal(res.statusCode, 200);
            let n = 0;
            res.on('data', (c: Buffer) => (n += c.length));
            res.on('end', () => resolve(n));
            res.on('error', reject);
          })
          .on('error', reject);
      }),
      20_000,
      'the 200 MB download',
    ),
  );
  assert.equal(download.result, SIZE);
  assert.ok(download.growth < MAX_RSS_GROWTH, `download grew RSS by ${(download.growth / 2 ** 20).toFixed(1)} MiB`);

  const upload = await peakRssDuring(() =>
    withTimeout(
      new Promise<string>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/upload', agent }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve(body));
          res.on('error', reject);
        });
        req.on('error', reject);
        generated(SIZE).pipe(req);
      }),
      20_000,
      'the 200 MB upload',
    ),
  );
  assert.equal((JSON.parse(upload.result) as { bytes: number }).bytes, SIZE);
  assert.ok(upload.growth < MAX_RSS_GROWTH, `upload grew RSS by ${(upload.growth / 2 ** 20).toFixed(1)} MiB`);
  t.diagnostic(`RSS growth: download ${(download.growth / 2 ** 20).toFixed(1)} MiB, upload ${(upload.growth / 2 ** 20).toFixed(1)} MiB`);
  assert.deepEqual(proxy.counters('s'), { requests: 2, failed: 0, appErrors: 0, retries: 0, websockets: 0 });
});
