// Per-release metrics: counters and a latency histogram per service+release, reached from the
// chosen target (no lookup on the hot path), and their Prometheus text rendering.

import type { ReleaseMetrics } from './types.ts';

/** Upper bounds (ms) of the latency histogram buckets; the last one is +Inf. */
export const LATENCY_BUCKETS_MS: readonly number[] = Object.freeze([1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, Infinity]);
const NBUCKETS = LATENCY_BUCKETS_MS.length;

/** The release label of requests that never reached a release (no instance, maintenance, pause refusal). */
export const NO_RELEASE = '-';

const CUMULATIVE = ['requests', 's1', 's2', 's3', 's4', 's5', 'connectionErrors', 'failed', 'appErrors', 'retries', 'websocketsTotal', 'sumMs'] as const;

/** Live figures of one service+release. Mutated in place by the hot path. */
export class ReleaseStats {
  readonly service: string;
  readonly release: string;
  requests = 0;
  s1 = 0;
  s2 = 0;
  s3 = 0;
  s4 = 0;
  s5 = 0;
  connectionErrors = 0;
  /** Requests baton failed itself: a 5xx page of its own (not maintenance), or a response cut midway. */
  failed = 0;
  /** Responses with a 5xx status from an instance of this release. */
  appErrors = 0;
  retries = 0;
  inflight = 0;
  /** Open WebSocket tunnels (gauge) and accepted upgrades (total). */
  websockets = 0;
  websocketsTotal = 0;
  /** Non-cumulative: hist[i] = requests whose latency fell in (bucket[i-1], bucket[i]]. */
  readonly hist: number[] = new Array<number>(NBUCKETS).fill(0);
  sumMs = 0;

  constructor(service: string, release: string) {
    this.service = service;
    this.release = release;
  }

  /** The cumulative figures (not the gauges), for a successor daemon (`baton upgrade`). */
  totals(): { figures: Record<string, number>; hist: number[] } {
    const figures: Record<string, number> = {};
    for (const k of CUMULATIVE) figures[k] = this[k];
    return { figures, hist: [...this.hist] };
  }

  /** Add a predecessor's totals to these. */
  addTotals(t: { figures: Record<string, number>; hist: number[] }): void {
    for (const k of CUMULATIVE) if (Number.isFinite(t.figures[k])) this[k] += t.figures[k]!;
    for (let i = 0; i < NBUCKETS; i++) if (Number.isFinite(t.hist[i])) this.hist[i]! += t.hist[i]!;
  }

  /** A response head (the instance's or baton's) went out `ms` after the request arrived. */
  respond(status: number, ms: number): void {
    this.requests++;
    if (status < 200) this.s1++;
    else if (status < 300) this.s2++;
    else if (status < 400) this.s3++;
    else if (status < 500) this.s4++;
    else this.s5++;
    let i = 0;
    // The last bound is Infinity: the scan always stops (NaN lands there too).
    while (i < NBUCKETS - 1 && !(ms <= LATENCY_BUCKETS_MS[i]!)) i++;
    this.hist[i]!++;
    this.sumMs += ms;
  }

  /** An instance's response head. */
  appResponse(status: number, ms: number): void {
    this.respond(status, ms);
    if (status >= 500) this.appErrors++;
  }

  /** A page of baton's own: a failure when 5xx (no instance, 502, 504, pause refusals); a 4xx is the client's. */
  batonAnswer(status: number, ms: number): void {
    this.respond(status, ms);
    if (status >= 500) this.failed++;
  }

  /** A response whose head went out was cut before its end (the instance broke the connection). */
  cut(): void {
    this.failed++;
  }

  /** A request ended without any response head (the client left first). */
  abandoned(): void {
    this.requests++;
  }

  snapshot(): ReleaseMetrics {
    const counts = new Array<number>(NBUCKETS);
    let acc = 0;
    for (let i = 0; i < NBUCKETS; i++) counts[i] = acc += this.hist[i]!;
    return {
      service: this.service,
      release: this.release,
      requests: this.requests,
      status: { '1xx': this.s1, '2xx': this.s2, '3xx': this.s3, '4xx': this.s4, '5xx': this.s5 },
      connectionErrors: this.connectionErrors,
      failed: this.failed,
      appErrors: this.appErrors,
      retries: this.retries,
      inflight: this.inflight,
      websockets: this.websockets,
      websocketsTotal: this.websocketsTotal,
      latency: { bucketsMs: LATENCY_BUCKETS_MS, counts, sumMs: this.sumMs },
    };
  }
}

function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function num(n: number): string {
  if (n === Infinity) return '+Inf';
  // Prometheus floats: avoid exponent notation surprises for small seconds values.
  return Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(12)));
}

/** The Prometheus text exposition (format 0.0.4) of the given release metrics and held-request gauges. */
export function renderPrometheus(metrics: readonly ReleaseMetrics[], held: readonly { service: string; held: number }[]): string {
  const out: string[] = [];
  const family = (name: string, type: string, help: string, rows: (m: ReleaseMetrics, sr: string) => string[]): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const m of metrics) out.push(...rows(m, `service="${label(m.service)}",release="${label(m.release)}"`));
  };
  family('baton_requests_total', 'counter', 'Client requests (and WebSocket upgrades) answered, by the release that answered them ("-": none).', (m, sr) => [
    `baton_requests_total{${sr}} ${m.requests}`,
  ]);
  family('baton_responses_total', 'counter', 'Response heads sent, by status class, whoever produced them (instance or baton).', (m, sr) =>
    (['1xx', '2xx', '3xx', '4xx', '5xx'] as const).map((c) => `baton_responses_total{${sr},class="${c}"} ${m.status[c]}`),
  );
  family('baton_request_duration_seconds', 'histogram', 'Time from the request\'s arrival to the response head.', (m, sr) => {
    const rows = m.latency.bucketsMs.map((b, i) => `baton_request_duration_seconds_bucket{${sr},le="${b === Infinity ? '+Inf' : num(b / 1000)}"} ${m.latency.counts[i]}`);
    rows.push(`baton_request_duration_seconds_sum{${sr}} ${num(m.latency.sumMs / 1000)}`);
    rows.push(`baton_request_duration_seconds_count{${sr}} ${m.latency.counts[m.latency.counts.length - 1]}`);
    return rows;
  });
  family('baton_inflight_requests', 'gauge', 'HTTP requests being proxied now.', (m, sr) => [`baton_inflight_requests{${sr}} ${m.inflight}`]);
  family('baton_websockets_open', 'gauge', 'Open WebSocket tunnels.', (m, sr) => [`baton_websockets_open{${sr}} ${m.websockets}`]);
  family('baton_failed_requests_total', 'counter', 'Requests baton failed itself: its own 5xx pages (no instance, 502 after connection errors, 504 timeouts, pause refusals; not maintenance) and responses cut midway.', (m, sr) => [
    `baton_failed_requests_total{${sr}} ${m.failed}`,
  ]);
  family('baton_app_errors_total', 'counter', 'Responses with a 5xx status from an instance of the release (the app\'s errors, not baton\'s).', (m, sr) => [
    `baton_app_errors_total{${sr}} ${m.appErrors}`,
  ]);
  family('baton_retries_total', 'counter', 'Attempts on this release that failed and were re-sent under the retry rules.', (m, sr) => [
    `baton_retries_total{${sr}} ${m.retries}`,
  ]);
  family('baton_upstream_connection_errors_total', 'counter', 'Attempts that got no response from an instance (refused, timeout, reset).', (m, sr) => [
    `baton_upstream_connection_errors_total{${sr}} ${m.connectionErrors}`,
  ]);
  out.push('# HELP baton_held_requests Requests held by a paused service now.', '# TYPE baton_held_requests gauge');
  for (const h of held) out.push(`baton_held_requests{service="${label(h.service)}"} ${h.held}`);
  return out.join('\n') + '\n';
}
