// A load loop that counts every request outcome: used by the tests, the
// example and the benchmarks. A request "fails" when it gets no response, a
// 5xx, or a body that is not a version we expect.

import { Client } from 'undici';

export interface LoadOptions {
  url: string; // e.g. http://127.0.0.1:8080/
  concurrency: number;
  /** Keep one connection per client (true) or open a new connection for every request. */
  keepAlive?: boolean;
  /** Extra paths mixed in: [path, every Nth request]. */
  mix?: { path: string; every: number }[];
  headers?: Record<string, string>;
  /** Stop after this many requests in total (a bound even if stop() is never called). */
  maxRequests?: number;
  /** Hard stop after this long. */
  maxMs?: number;
  /** Each client keeps the cookies it is given (Set-Cookie) and sends them back, like a browser. */
  cookies?: boolean;
  /** Source address of the clients' connections (127.0.0.0/8 is all loopback). */
  localAddress?: string;
  /** Pause between a client's requests. */
  thinkMs?: number;
  /** For an https:// url: the CA to trust and the name to ask for (SNI); verification stays on. */
  tls?: { ca: string; servername?: string };
  /** Offer HTTP/2 by ALPN (https only); each client is then one h2 session. */
  http2?: boolean;
}

/** What one client saw. */
export interface ClientRecord {
  /** Distinct bodies in order (successful responses). */
  sequence: string[];
  failed: number;
  /** Bodies of the failed responses (first few). */
  failures: string[];
  cookies: Record<string, string>;
}

export interface LoadResult {
  total: number;
  ok: number;
  failed: number;
  /** Count of each response body (trimmed), e.g. { 'v1': 120, 'v2': 300 }. */
  bodies: Record<string, number>;
  statuses: Record<string, number>;
  errors: string[]; // first few failure descriptions
  /** Per client: the sequence of distinct bodies seen, in order (v1, v2 …). */
  sequences: string[][];
  clients: ClientRecord[];
  durationMs: number;
}

export interface RunningLoad {
  stop(): Promise<LoadResult>;
  /** Resolves once at least n requests completed (bounded by timeoutMs). */
  waitFor(n: number, timeoutMs: number): Promise<void>;
  /**
   * Resolves once every client completed k more requests from now (bounded by
   * timeoutMs). With k ≥ 2 each client has made at least one request that began
   * after the call — what "every client ends on the new version" needs: a total
   * count can be reached by the other clients while one still waits on an
   * answer from the old version.
   */
  waitForEach(k: number, timeoutMs: number): Promise<void>;
  readonly snapshot: () => LoadResult;
}

export function startLoad(opts: LoadOptions): RunningLoad {
  const u = new URL(opts.url);
  const origin = u.origin;
  const started = Date.now();
  const res: LoadResult = { total: 0, ok: 0, failed: 0, bodies: {}, statuses: {}, errors: [], sequences: [], clients: [], durationMs: 0 };
  let stopping = false;
  const maxMs = opts.maxMs ?? 120_000;
  const max = opts.maxRequests ?? Number.POSITIVE_INFINITY;
  const waiters: { n: number; resolve: () => void }[] = [];
  /** Requests completed per client, by index into res.clients. */
  const completed: number[] = [];
  const eachWaiters: { targets: number[]; resolve: () => void }[] = [];

  const record = (client: ClientRecord, status: number | null, body: string | null, err: string | null, reason: string | null = null): void => {
    const seq = client.sequence;
    res.total++;
    if (status !== null) res.statuses[String(status)] = (res.statuses[String(status)] ?? 0) + 1;
    if (err !== null || status === null || status >= 500) {
      res.failed++;
      client.failed++;
      const what = err ?? `status ${status}${reason === null ? '' : ` (x-baton-error ${reason})`}: ${body?.slice(0, 120)}`;
      if (client.failures.length < 5) client.failures.push(what);
      if (res.errors.length < 20) res.errors.push(what);
    } else {
      res.ok++;
      const b = (body ?? '').trim();
      res.bodies[b] = (res.bodies[b] ?? 0) + 1;
      if (seq[seq.length - 1] !== b) seq.push(b);
    }
    const idx = res.clients.indexOf(client);
    completed[idx] = (completed[idx] ?? 0) + 1;
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (res.total >= waiters[i]!.n) waiters.splice(i, 1)[0]!.resolve();
    }
    for (let i = eachWaiters.length - 1; i >= 0; i--) {
      if (eachWaiters[i]!.targets.every((n, c) => (completed[c] ?? 0) >= n)) eachWaiters.splice(i, 1)[0]!.resolve();
    }
  };

  const local = {
    ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    ...(opts.tls ? { connect: { ca: opts.tls.ca, ...(opts.tls.servername ? { servername: opts.tls.servername } : {}) } } : {}),
    ...(opts.http2 ? { allowH2: true } : {}),
  };
  const worker = async (idx: number): Promise<void> => {
    const rec: ClientRecord = { sequence: [], failed: 0, failures: [], cookies: {} };
    res.sequences.push(rec.sequence);
    res.clients.push(rec);
    let client = new Client(origin, { pipelining: 1, keepAliveTimeout: 30_000, ...local });
    let n = 0;
    try {
      while (!stopping && res.total < max && Date.now() - started < maxMs) {
        n++;
        let path = u.pathname + u.search;
        for (const m of opts.mix ?? []) if ((n + idx) % m.every === 0) path = m.path;
        try {
          const cookie = Object.entries(rec.cookies).map(([k, v]) => `${k}=${v}`).join('; ');
          const r = await client.request({
            method: 'GET',
            path,
            headers: { ...opts.headers, ...(cookie ? { cookie } : {}), ...(opts.keepAlive === false ? { connection: 'close' } : {}) },
            headersTimeout: 30_000,
            bodyTimeout: 30_000,
          });
          const body = await r.body.text();
          if (opts.cookies) keepCookies(rec.cookies, r.headers['set-cookie']);
          // baton's own answers name their reason (x-baton-error): a failure's message carries it.
          const reason = r.headers['x-baton-error'];
          record(rec, r.statusCode, body, null, reason === undefined ? null : String(reason));
        } catch (e) {
          record(rec, null, null, `${(e as Error & { code?: string }).code ?? ''} ${(e as Error).message}`);
        }
        if (opts.keepAlive === false) {
          await client.close().catch(() => {});
          client = new Client(origin, { pipelining: 1, ...local });
        }
        if (opts.thinkMs) await new Promise((r) => setTimeout(r, opts.thinkMs));
      }
    } finally {
      await client.close().catch(() => {});
    }
  };

  const workers = Array.from({ length: opts.concurrency }, (_, i) => worker(i));
  const done = Promise.all(workers);

  return {
    snapshot: () => ({ ...res, durationMs: Date.now() - started }),
    async waitFor(n, timeoutMs) {
      if (res.total >= n) return;
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`load: only ${res.total} of ${n} requests completed within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({ n, resolve: () => { clearTimeout(t); resolve(); } });
      });
    },
    async waitForEach(k, timeoutMs) {
      const targets = Array.from({ length: opts.concurrency }, (_, c) => (completed[c] ?? 0) + k);
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => {
          const behind = targets.map((n, c) => `client ${c}: ${(completed[c] ?? 0) - n + k} of ${k}`).join(', ');
          reject(new Error(`load: not every client completed ${k} more requests within ${timeoutMs} ms (${behind})`));
        }, timeoutMs);
        eachWaiters.push({ targets, resolve: () => { clearTimeout(t); resolve(); } });
      });
    },
    async stop() {
      stopping = true;
      await done;
      res.durationMs = Date.now() - started;
      return res;
    },
  };
}

function keepCookies(jar: Record<string, string>, header: string | string[] | undefined): void {
  for (const line of header === undefined ? [] : Array.isArray(header) ? header : [header]) {
    const [pair] = line.split(';');
    const eq = pair?.indexOf('=') ?? -1;
    if (pair && eq > 0) jar[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
}
