// The load loop of test/helpers/load.ts (same clients, same notion of failure:
// no response, a 5xx, or an unexpected body), plus the start and end time of
// every request, so a bench can ask "how slow were the requests that overlapped
// this deploy" against "how slow were they with no deploy". Used by deploy.ts.

import { Client } from 'undici';

export interface TimedLoadOptions {
  origin: string; // http://127.0.0.1:PORT
  clients: number;
  keepAlive: boolean;
  /** Path of request n (1-based) of client idx. */
  path: (n: number, idx: number) => string;
  /** Delay before client idx starts (to spread periodic requests over time). */
  startDelayMs?: (idx: number) => number;
  /** Bodies that count as a success (anything else with a 2xx is a failure). */
  expectBody?: (body: string) => boolean;
  maxMs: number;
}

export interface RequestRecord {
  path: string;
  start: number; // performance.now()
  end: number;
  ok: boolean;
}

export interface TimedLoad {
  readonly records: RequestRecord[];
  total(): number;
  failed(): number;
  readonly errors: string[];
  readonly statuses: Record<string, number>;
  readonly bodies: Record<string, number>;
  stop(): Promise<void>;
}

export function startTimedLoad(o: TimedLoadOptions): TimedLoad {
  const records: RequestRecord[] = [];
  const errors: string[] = [];
  const statuses: Record<string, number> = {};
  const bodies: Record<string, number> = {};
  let failed = 0;
  let stopping = false;
  const started = performance.now();
  const live = (): boolean => !stopping && performance.now() - started < o.maxMs;

  const worker = async (idx: number): Promise<void> => {
    const delay = o.startDelayMs?.(idx) ?? 0;
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    let client = new Client(o.origin, { pipelining: 1, keepAliveTimeout: 30_000 });
    let n = 0;
    try {
      while (live()) {
        const path = o.path(++n, idx);
        const start = performance.now();
        let ok = false;
        try {
          const r = await client.request({
            method: 'GET',
            path,
            headers: o.keepAlive ? {} : { connection: 'close' },
            headersTimeout: 30_000,
            bodyTimeout: 30_000,
          });
          const body = (await r.body.text()).trim();
          statuses[r.statusCode] = (statuses[r.statusCode] ?? 0) + 1;
          if (r.statusCode >= 500) {
            if (errors.length < 20) errors.push(`status ${r.statusCode} on ${path}: ${body.slice(0, 120)}`);
          } else if (o.expectBody && !o.expectBody(body)) {
            if (errors.length < 20) errors.push(`unexpected body on ${path}: ${body.slice(0, 120)}`);
          } else {
            ok = true;
            bodies[body] = (bodies[body] ?? 0) + 1;
          }
        } catch (e) {
          if (errors.length < 20) errors.push(`${path}: ${(e as Error & { code?: string }).code ?? ''} ${(e as Error).message}`);
        }
        if (!ok) failed++;
        records.push({ path, start, end: performance.now(), ok });
        if (!o.keepAlive) {
          await client.close().catch(() => {});
          client = new Client(o.origin, { pipelining: 1 });
        }
      }
    } finally {
      await client.close().catch(() => {});
    }
  };
  const done = Promise.all(Array.from({ length: o.clients }, (_, i) => worker(i)));
  return {
    records,
    total: () => records.length,
    failed: () => failed,
    errors,
    statuses,
    bodies,
    async stop() {
      stopping = true;
      await done;
    },
  };
}

/** Latency stats (ms) of the records matching `pick` that overlap [from, to]. */
export function latencyIn(records: RequestRecord[], from: number, to: number, pick: (r: RequestRecord) => boolean): { n: number; p50: number; p99: number; max: number } {
  const xs: number[] = [];
  for (const r of records) if (r.end >= from && r.start <= to && pick(r)) xs.push(r.end - r.start);
  xs.sort((a, b) => a - b);
  const at = (p: number): number => (xs.length ? xs[Math.min(xs.length - 1, Math.max(0, Math.ceil((p / 100) * xs.length) - 1))]! : NaN);
  return { n: xs.length, p50: at(50), p99: at(99), max: xs.length ? xs[xs.length - 1]! : NaN };
}
