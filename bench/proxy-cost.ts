// The proxy's cost per request, in units that do not depend on what else runs on
// the machine: CPU instructions (valgrind's callgrind counts them) and bytes
// allocated on the JavaScript heap. Wall-clock figures on a shared 2-core machine
// are noise; these are repeatable to about 1%.
//
// The proxy (src/proxy's Proxy, one service, one target) runs alone in a child
// process; the app (100-byte answers) and the client (4 keep-alive connections,
// a browser's request headers) run in this process. Instructions: the child runs under
// callgrind with instrumentation off for start-up and N1 requests of warm-up,
// on for the next N2 − N1 requests only, off again for the shutdown (the
// previous method, the difference of an N1 and an N2 run, still counted the
// JIT's tiering up: 30% of its figure was the optimising compiler). Allocation: the child runs with a young
// generation larger than the traffic allocates (no collection in between: it
// checks) and reports the heap's growth over N2 − N1 requests after N1 of warm-up.
//
//   node bench/proxy-cost.ts [--n1 15000] [--n2 17000] [--no-callgrind] [--node-options '...']
//   PROXY_COST_HEADERS=host: wrk's request head (Host alone) instead of a browser's
//   PROXY_COST_FLOOR=1: a bare TCP relay instead of baton, the floor of Node's sockets
//
// Not part of `npm run bench`. Needs valgrind for the instruction count.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { AddressInfo } from 'node:net';

const HERE = path.dirname(new URL(import.meta.url).pathname);

// ---- the child: the proxy alone ----

/**
 * PROXY_COST_FLOOR=1: the client is served by a bare TCP relay instead (one
 * connection to the app per client connection, bytes passed both ways, with
 * the same Node primitives baton's path uses: a 'data' listener on the client,
 * an `onread` buffer on the app's side, a copy per response). What Node's
 * sockets cost before any HTTP is read: the floor under baton's figure.
 */
async function relayFloor(appPort: number): Promise<{ host: string; port: number }> {
  const net = await import('node:net');
  const server = net.createServer({ noDelay: true }, (client) => {
    const buffer = Buffer.allocUnsafe(64 * 1024);
    const app = net.connect({ host: '127.0.0.1', port: appPort, noDelay: true, onread: { buffer, callback: (n: number) => {
      client.write(Buffer.from(buffer.subarray(0, n)));
      return true;
    } } });
    client.on('data', (d: Buffer) => app.write(d));
    client.on('close', () => app.destroy());
    app.on('close', () => client.destroy());
    client.on('error', () => {});
    app.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { host: '127.0.0.1', port: (server.address() as AddressInfo).port };
}

async function child(appPort: number): Promise<void> {
  const { Proxy } = await import('../src/proxy/proxy.ts');
  const logger = { debug() {}, info() {}, warn() {}, error() {}, child() { return logger; } };
  // BATON_BENCH_LEAN=0: node:http serves every request (the path before src/proxy/h1/), for a before/after in one run.
  const leanHttp1 = process.env['BATON_BENCH_LEAN'] !== '0';
  const proxy = new Proxy({ logger: logger as never, clientIdleTimeoutMs: 60_000, headersTimeoutMs: 60_000, closeTimeoutMs: 3000, leanHttp1 });
  let [addr] = await proxy.listen([{ host: '127.0.0.1', port: 0 }]);
  if (process.env['PROXY_COST_FLOOR'] === '1') addr = await relayFloor(appPort);
  proxy.apply({
    services: [
      {
        name: 'web',
        hosts: [],
        isDefault: true,
        balance: 'least_outstanding',
        upstream: { keepAliveTimeoutMs: 60_000, connectTimeoutMs: 5000, responseTimeoutMs: 60_000 },
        targets: [{ id: 'web-1', release: 'r1', host: '127.0.0.1', port: appPort }],
      } as never,
    ],
  });
  let gcs = 0;
  const { PerformanceObserver } = await import('node:perf_hooks');
  const v8 = await import('node:v8');
  new PerformanceObserver((l) => (gcs += l.getEntries().length)).observe({ entryTypes: ['gc'] });
  let sampling: import('node:inspector').Session | null = null;
  let mark: { heap: number; ab: number; ext: number; gcs: number } | null = null;
  const snap = () => ({ heap: v8.getHeapStatistics().used_heap_size, ab: process.memoryUsage().arrayBuffers, ext: process.memoryUsage().external, gcs });
  process.stdout.write(JSON.stringify({ port: addr!.port }) + '\n');
  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const cmd = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (cmd === 'mark' && process.env['PROXY_COST_SAMPLE']) {
        // Where the bytes go: V8's sampling heap profiler, dead objects included.
        void import('node:inspector').then(({ Session }) => {
          const s = new Session();
          s.connect();
          s.post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true }, () => {
            sampling = s;
            process.stdout.write(JSON.stringify({ marked: true }) + '\n');
          });
        });
        mark = snap();
      } else if (cmd === 'measure' && sampling !== null) {
        sampling.post('HeapProfiler.stopSampling', (_e, r) => {
          const self = new Map<string, number>();
          type N = { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: N[] };
          const walk = (n: N, stack: string): void => {
            const k = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.replace(/^.*\/(src|node_modules)\//, '$1/')}:${n.callFrame.lineNumber + 1}`;
            if (n.selfSize > 0) self.set(k + '  <  ' + stack, (self.get(k + '  <  ' + stack) ?? 0) + n.selfSize);
            for (const c of n.children) walk(c, k.split(' ')[0] + ' ' + stack.split(' ').slice(0, 6).join(' '));
          };
          walk((r as { profile: { head: N } }).profile.head, '');
          const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, 60);
          for (const [k, v] of top) process.stderr.write(`${v.toString().padStart(10)} ${k}\n`);
          process.stdout.write(JSON.stringify({ heap: 0, arrayBuffers: 0, external: 0, gcs: 0 }) + '\n');
        });
      } else if (cmd === 'mark') {
        (globalThis as { gc?: () => void }).gc?.();
        // The forced collection's 'gc' entry arrives asynchronously: mark after it.
        setTimeout(() => {
          mark = snap();
          process.stdout.write(JSON.stringify({ marked: true }) + '\n');
        }, 100);
      } else if (cmd === 'measure') {
        const now = snap();
        process.stdout.write(JSON.stringify({ heap: now.heap - mark!.heap, arrayBuffers: now.ab - mark!.ab, external: now.ext - mark!.ext, gcs: now.gcs - mark!.gcs }) + '\n');
      } else if (cmd === 'exit') {
        void proxy.close().then(() => process.exit(0));
      }
    }
  });
}

// ---- the parent: app, client, orchestration ----

function lines(p: ChildProcess): AsyncIterator<Record<string, unknown>> {
  let buf = '';
  const queue: Record<string, unknown>[] = [];
  let wake: (() => void) | null = null;
  p.stdout!.setEncoding('utf8');
  p.stdout!.on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        queue.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        process.stderr.write(`child: ${l}\n`);
      }
      wake?.();
    }
  });
  return {
    async next() {
      const deadline = Date.now() + 300_000;
      while (queue.length === 0) {
        if (p.exitCode !== null) throw new Error(`the proxy child exited (${p.exitCode})`);
        if (Date.now() > deadline) throw new Error('no answer from the proxy child in 300 s');
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 1000);
        });
        wake = null;
      }
      return { value: queue.shift()!, done: false };
    },
  };
}

const BODY = Buffer.alloc(100, 'x');
// A browser's request head, names as browsers and curl send them (Node's client adds Connection).
const BROWSER_HEADERS = {
  'Host': 'app.test',
  'User-Agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36',
  'Accept': 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'Accept-Encoding': 'gzip, deflate, br',
  'Accept-Language': 'en-GB,en;q=0.9',
};

// PROXY_COST_HEADERS=host: Host alone (and Node's Connection), as wrk sends (bench/proxy.ts's load).
const HEADERS = process.env['PROXY_COST_HEADERS'] === 'host' ? { Host: 'app.test' } : BROWSER_HEADERS;

async function drive(port: number, n: number, agent: http.Agent): Promise<void> {
  let sent = 0;
  let failed = 0;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const req = http.request(
        { host: '127.0.0.1', port, path: '/', agent, headers: HEADERS },
        (res) => {
          if (res.statusCode !== 200) failed++;
          res.resume();
          res.on('end', resolve);
        },
      );
      req.on('error', () => {
        failed++;
        resolve();
      });
      req.end();
    });
  const worker = async (): Promise<void> => {
    while (sent < n) {
      sent++;
      await one();
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  if (failed > 0) throw new Error(`${failed} of ${n} requests failed`);
}

/**
 * Run the proxy child for n1 requests of warm-up, then n2 − n1 measured ones.
 * `onWindow` (callgrind mode) is called with the child's pid when the measured
 * window opens (true) and closes (false).
 */
async function runChild(appPort: number, n1: number, n2: number, wrap: string[], nodeArgs: string[], onWindow?: (pid: number, open: boolean) => void): Promise<{ alloc?: Record<string, number> }> {
  const node = process.execPath;
  const args = [...wrap, node, ...nodeArgs, path.join(HERE, 'proxy-cost.ts'), '--child', String(appPort)];
  const p = spawn(args[0]!, args.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    const it = lines(p);
    const { port } = (await it.next()).value as { port: number };
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    await drive(port, n1, agent);
    p.stdin!.write('mark\n');
    await it.next();
    onWindow?.(p.pid!, true);
    await drive(port, n2 - n1, agent);
    onWindow?.(p.pid!, false);
    p.stdin!.write('measure\n');
    const alloc = (await it.next()).value as Record<string, number>;
    agent.destroy();
    p.stdin!.write('exit\n');
    await new Promise<void>((r) => (p.exitCode !== null ? r() : p.once('exit', () => r())));
    return { alloc };
  } finally {
    if (p.exitCode === null) p.kill('SIGKILL');
  }
}

function callgrindTotal(file: string): number {
  // With instrumentation switched on mid-run, "summary:" says 0 and "totals:" holds the count.
  const m = /^totals:\s*(\d+)/m.exec(readFileSync(file, 'utf8')) ?? /^summary:\s*(\d+)/m.exec(readFileSync(file, 'utf8'));
  if (!m) throw new Error(`no totals in ${file}`);
  return Number(m[1]);
}

async function parent(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'n1': { type: 'string', default: '15000' },
      'n2': { type: 'string', default: '17000' },
      'no-callgrind': { type: 'boolean', default: false },
      'node-options': { type: 'string', default: '' },
    },
  });
  const n1 = Number(values.n1);
  const n2 = Number(values.n2);
  const extra = values['node-options'] ? values['node-options'].split(' ') : [];
  const app = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
    res.end(BODY);
  });
  app.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const appPort = (app.address() as AddressInfo).port;
  try {
    // Allocation: a young generation that holds all of it (64 MB semi-spaces).
    const allocs: number[] = [];
    for (let i = 0; i < 3; i++) {
      const { alloc } = await runChild(appPort, n1, n2, [], ['--expose-gc', '--min-semi-space-size=64', '--max-semi-space-size=64', ...extra]);
      if (alloc!['gcs'] !== 0) console.log(`  (run ${i + 1}: ${alloc!['gcs']} collections during the window: allocation figure not valid)`);
      else allocs.push((alloc!['heap'] ?? 0) / (n2 - n1));
      console.log(`alloc run ${i + 1}: JS heap +${((alloc!['heap'] ?? 0) / (n2 - n1)).toFixed(0)} B/request, arrayBuffers ${((alloc!['arrayBuffers'] ?? 0) / (n2 - n1)).toFixed(1)} B/request, external ${((alloc!['external'] ?? 0) / (n2 - n1)).toFixed(1)} B/request`);
    }
    allocs.sort((a, b) => a - b);
    if (allocs.length > 0) console.log(`JS heap allocated per request (median): ${allocs[Math.floor(allocs.length / 2)]!.toFixed(0)} B`);
    if (values['no-callgrind']) return;
    if (spawnSync('valgrind', ['--version']).status !== 0) throw new Error('valgrind is missing (apt-get install valgrind)');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'baton-cg-'));
    try {
      const out = path.join(dir, 'cg.out');
      // --perf-basic-prof off, no JIT-less mode: the real JIT is what runs in production.
      // --predictable: V8 on one thread (no concurrent compilation, marking or
      // sweeping) with a fixed hash seed, so that what background threads do, and
      // when, does not move the count between runs.
      // Instrumentation is off during start-up and the n1 requests of warm-up (the
      // JIT's tiering up), and on for the n2 − n1 measured requests only
      // (callgrind_control switches it through vgdb).
      const toggle = (pid: number, open: boolean): void => {
        const r = spawnSync('callgrind_control', [`--instr=${open ? 'on' : 'off'}`, String(pid)], { encoding: 'utf8', timeout: 120_000 });
        if (r.status !== 0) throw new Error(`callgrind_control --instr=${open ? 'on' : 'off'} failed: ${r.stderr || r.stdout}`);
      };
      await runChild(appPort, n1, n2, ['valgrind', '--tool=callgrind', '--trace-children=no', '--instr-atstart=no', `--callgrind-out-file=${out}`, '--dump-instr=no', '--compress-strings=no'], ['--predictable', ...extra], toggle);
      const total = callgrindTotal(out);
      console.log(`callgrind: ${total.toLocaleString('en')} instructions for requests ${n1 + 1}–${n2}`);
      console.log(`instructions per proxied request: ${Math.round(total / (n2 - n1)).toLocaleString('en')}`);
    } finally {
      // PROXY_COST_KEEP=1 keeps the callgrind output (callgrind_annotate: where the instructions go).
      if (process.env['PROXY_COST_KEEP']) console.log(`callgrind output kept in ${dir}`);
      else rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    app.closeAllConnections();
    app.close();
  }
}

if (process.argv[2] === '--child') await child(Number(process.argv[3]));
else await parent();
