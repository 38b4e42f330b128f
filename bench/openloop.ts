// An open-loop (fixed-rate) HTTP/1.1 load generator, light enough to run at
// ~10k requests/s from one Node process: raw keep-alive sockets, one request in
// flight per connection, requests scheduled at fixed times whether or not the
// server keeps up. Latency is measured from the time a request was SCHEDULED
// (not sent), so a server that falls behind shows its queueing delay (no
// coordinated omission). Prints one JSON line (OpenLoopResult in lib.ts).
//
//   node bench/openloop.ts --url http://127.0.0.1:8080/ --rate 5000 --seconds 10 --connections 50

import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    warmup: { type: 'string', default: '1' },
    host: { type: 'string' },
    // Also report the 100 ms windows (by scheduled time) in which some request took at least this long.
    'slow-ms': { type: 'string' },
    // A CPU weight for this process's autogroup (root only; see bench/latency.ts --nice).
    nice: { type: 'string' },
  },
});
if (values.nice !== undefined) {
  try {
    writeFileSync('/proc/self/autogroup', values.nice);
  } catch (err) {
    process.stderr.write(`openloop: could not set the autogroup's nice value: ${(err as Error).message}\n`);
  }
}
if (!values.url) {
  console.error('usage: node bench/openloop.ts --url URL --rate N --seconds S --connections C [--warmup S] [--host HOST]');
  process.exit(2);
}
const url = new URL(values.url);
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const warmup = Number(values.warmup);
const nconn = Number(values.connections);
const port = Number(url.port || 80);
const request = `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${values.host ?? url.host}\r\nUser-Agent: baton-openloop\r\n\r\n`;
const intervalMs = 1000 / rate;
const slowMs = values['slow-ms'] === undefined ? null : Number(values['slow-ms']);

// Pending requests: their scheduled times, FIFO.
const queue: number[] = [];
let qHead = 0;
const lat = new Float64Array(Math.ceil(rate * (seconds + 1) * 1.2) + 1000);
let nLat = 0;
/** With --slow-ms: the slowest latency per 100 ms window of scheduled time, from measureFrom. */
const windowMax = new Float64Array(Math.ceil((seconds + 1) * 10) + 1);
let sent = 0;
let completed = 0;
let errors = 0;
let non2xx = 0;
let issued = 0;
let stopped = false;

const t0 = performance.now() + 200; // connect first
const measureFrom = t0 + warmup * 1000;
const endAt = measureFrom + seconds * 1000;

interface Conn {
  socket: net.Socket;
  busy: boolean;
  scheduled: number;
  buf: string;
}
const conns: Conn[] = [];

function connect(c: Conn): void {
  const s = net.connect({ host: url.hostname, port, noDelay: true });
  s.setEncoding('latin1');
  c.socket = s;
  c.buf = '';
  s.on('data', (d: string) => onData(c, d));
  let handled = false;
  const gone = (): void => {
    if (handled || c.socket !== s) return;
    handled = true;
    if (c.busy) {
      c.busy = false;
      errors++;
    }
    if (!stopped) setTimeout(() => { connect(c); dispatch(); }, 10);
  };
  s.on('error', gone);
  s.on('close', gone);
}

function onData(c: Conn, d: string): void {
  c.buf += d;
  const he = c.buf.indexOf('\r\n\r\n');
  if (he < 0) return;
  const head = c.buf.slice(0, he);
  const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  let complete = false;
  let consumed = 0;
  if (m) {
    const end = he + 4 + Number(m[1]);
    if (c.buf.length >= end) {
      complete = true;
      consumed = end;
    }
  } else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
    const z = c.buf.indexOf('\r\n0\r\n\r\n', he) >= 0 ? c.buf.indexOf('\r\n0\r\n\r\n', he) + 7 : c.buf.startsWith('0\r\n\r\n', he + 4) ? he + 9 : -1;
    if (z >= 0) {
      complete = true;
      consumed = z;
    }
  } else {
    complete = true; // no body (e.g. 204)
    consumed = he + 4;
  }
  if (!complete) return;
  const status = Number(head.slice(9, 12));
  c.buf = c.buf.slice(consumed);
  const now = performance.now();
  c.busy = false;
  completed++;
  if (status < 200 || status >= 400) non2xx++;
  if (c.scheduled >= measureFrom && c.scheduled < endAt && nLat < lat.length) {
    lat[nLat++] = now - c.scheduled;
    const w = Math.floor((c.scheduled - measureFrom) / 100);
    if (now - c.scheduled > windowMax[w]!) windowMax[w] = now - c.scheduled;
  }
  if (/\r\nconnection:\s*close/i.test(head)) {
    c.socket.destroy();
    return;
  }
  next(c);
}

function next(c: Conn): void {
  if (qHead >= queue.length) return;
  c.scheduled = queue[qHead++]!;
  if (qHead > 65536) {
    queue.splice(0, qHead);
    qHead = 0;
  }
  c.busy = true;
  sent++;
  c.socket.write(request);
}

function dispatch(): void {
  for (const c of conns) {
    if (qHead >= queue.length) return;
    if (!c.busy && !c.socket.connecting && !c.socket.destroyed) next(c);
  }
}

/** The generator's own stalls: the longest gap between two ticks in the measured window (its loop is late, so are its readings). */
let lastTick = 0;
let maxTickGap = 0;

function tick(): void {
  const now = performance.now();
  if (now >= measureFrom && now < endAt && lastTick > 0) maxTickGap = Math.max(maxTickGap, now - lastTick);
  lastTick = now;
  if (now >= t0) {
    const due = Math.floor((Math.min(now, endAt) - t0) / intervalMs);
    for (; issued < due; issued++) queue.push(t0 + issued * intervalMs);
    dispatch();
  }
  if (now >= endAt) {
    clearInterval(timer);
    finish().catch((err: unknown) => {
      process.stderr.write(`openloop: ${String(err)}\n`);
      process.exit(1);
    });
  }
}

async function finish(): Promise<void> {
  // Let what is in flight or queued complete (bounded).
  const deadline = performance.now() + 5000;
  while ((qHead < queue.length || conns.some((c) => c.busy)) && performance.now() < deadline) {
    dispatch();
    await new Promise((r) => setTimeout(r, 10));
  }
  stopped = true;
  const unfinished = queue.length - qHead + conns.filter((c) => c.busy).length;
  for (const c of conns) c.socket.destroy();
  const s = lat.subarray(0, nLat).sort();
  const pct = (p: number): number => (nLat ? s[Math.min(nLat - 1, Math.max(0, Math.ceil((p / 100) * nLat) - 1))]! : NaN);
  const measured = nLat; // completed requests scheduled inside the measured window
  const result = {
    rate,
    achievedRps: measured / seconds,
    sent,
    completed,
    errors,
    non2xx,
    unfinished,
    p50Ms: pct(50),
    p90Ms: pct(90),
    p99Ms: pct(99),
    maxMs: nLat ? s[nLat - 1]! : NaN,
    generatorMaxGapMs: maxTickGap,
    // [wall-clock ms at the window's start, slowest latency ms] of each slow 100 ms window.
    ...(slowMs === null ? {} : { slowWindows: [...windowMax].flatMap((m, i) => (m >= slowMs ? [[Math.round(performance.timeOrigin + measureFrom + i * 100), Math.round(m)]] : [])) }),
  };
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

for (let i = 0; i < nconn; i++) {
  const c = { busy: false, scheduled: 0, buf: '' } as Conn;
  conns.push(c);
  connect(c);
}
const timer = setInterval(tick, 1);
