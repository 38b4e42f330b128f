// A 1 GiB download and a 1 GiB upload through the real daemon, with the daemon's
// memory measured inside the daemon (its /metrics: process_resident_memory_bytes),
// never in this process (which holds the client and would measure the allocator).
// The baseline is taken after traffic (memory idle before the first proxied
// request is lower than after any: the pools, parsers and code paths exist then).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Readable } from 'node:stream';
import { createDaemon, serviceYaml, type TestDaemon } from '../helpers/daemon.ts';
import { parsePrometheus, promValue, withTimeout } from '../fixtures/proxy-harness.ts';

const SIZE = 1024 ** 3;
const MiB = 2 ** 20;
/**
 * How far the daemon's RSS may rise above its after-traffic idle while a GiB
 * streams through it each way, and stay there. The bytes in flight are bounded
 * by socket and stream buffers (backpressure both ways); what grew before was
 * glibc's heap keeping the high-water mark of dead 64 KiB read buffers that V8
 * had not collected yet (+25 to +38 MiB here, all in /proc/PID/smaps' [heap]).
 * With collections paced by the bytes streamed (src/proxy/gc-pacer.ts): +7 to +10 MiB.
 */
const MAX_GROWTH = 24 * MiB;

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

/** The daemon's resident memory, as the daemon itself reports it. */
async function daemonRss(metricsPort: number): Promise<number> {
  const text = await withTimeout(
    fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text()),
    10_000,
    'the daemon\'s /metrics',
  );
  const rss = promValue(parsePrometheus(text).samples, 'process_resident_memory_bytes', {});
  assert.ok(rss !== undefined && rss > 0, 'the daemon reports its resident memory');
  return rss;
}

/** Run `work` while sampling the daemon's RSS; the highest sample and the RSS right after. */
async function rssDuring<T>(metricsPort: number, work: () => Promise<T>): Promise<{ result: T; peak: number; after: number }> {
  let peak = 0;
  let running = true;
  const sampler = (async () => {
    while (running) {
      peak = Math.max(peak, await daemonRss(metricsPort));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  try {
    const result = await work();
    running = false;
    await sampler;
    const after = await daemonRss(metricsPort);
    return { result, peak: Math.max(peak, after), after };
  } finally {
    running = false;
  }
}

function download(port: number, agent: http.Agent, bytes: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: `/download?bytes=${bytes}`, agent }, (res) => {
        if (res.statusCode !== 200) reject(new Error(`download answered ${res.statusCode}`));
        let n = 0;
        res.on('data', (c: Buffer) => (n += c.length));
        res.on('end', () => resolve(n));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

function upload(port: number, agent: http.Agent, bytes: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/upload', agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve((JSON.parse(body) as { bytes: number }).bytes));
      res.on('error', reject);
    });
    req.on('error', reject);
    generated(bytes).pipe(req);
  });
}

const fmt = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;

test('a 1 GiB download and a 1 GiB upload through the daemon: its own RSS stays within a bound', async (t) => {
  let d: TestDaemon | null = null;
  t.after(() => d?.cleanup());
  d = await createDaemon({ metrics: true, services: serviceYaml({ instances: 1 }) });
  const metricsPort = d.metricsPort!;
  const deployed = await d.cli(['deploy', 'web', await d.release('v1')], 60_000);
  assert.equal(deployed.code, 0, deployed.stdout + deployed.stderr);

  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  // Traffic first: the idle memory users see is the one after traffic.
  const WARM = 256 * 1024;
  for (let i = 0; i < 3; i++) {
    assert.equal(await download(d.port, agent, WARM), WARM);
    assert.equal(await upload(d.port, agent, WARM), WARM);
  }
  const idle = await daemonRss(metricsPort);

  const down = await rssDuring(metricsPort, () => withTimeout(download(d!.port, agent, SIZE), 120_000, 'the 1 GiB download'));
  assert.equal(down.result, SIZE);
  const up = await rssDuring(metricsPort, () => withTimeout(upload(d!.port, agent, SIZE), 120_000, 'the 1 GiB upload'));
  assert.equal(up.result, SIZE);

  t.diagnostic(`daemon RSS: idle after traffic ${fmt(idle)}; download peak +${fmt(down.peak - idle)}, after +${fmt(down.after - idle)}; upload peak +${fmt(up.peak - idle)}, after +${fmt(up.after - idle)}`);
  // Memory measured after the traffic too: what stays is what users live with.
  assert.ok(down.peak - idle < MAX_GROWTH, `the download raised the daemon's RSS by ${fmt(down.peak - idle)} (limit ${fmt(MAX_GROWTH)})`);
  assert.ok(up.peak - idle < MAX_GROWTH, `the upload raised the daemon's RSS by ${fmt(up.peak - idle)} (limit ${fmt(MAX_GROWTH)})`);
  assert.ok(up.after - idle < MAX_GROWTH, `after both, the daemon's RSS stayed ${fmt(up.after - idle)} above idle (limit ${fmt(MAX_GROWTH)})`);

  const status = await d.status('web');
  const c = status.services[0].counters;
  assert.equal(c.failed, 0);
  assert.equal(c.appErrors, 0);
});
