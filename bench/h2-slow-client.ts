// HTTP/2 slow readers for bench/tls.ts: `connections` sessions, each opening
// `streams` streams for a large response and reading none of it. A paused
// stream stops Node's client from consuming the data, so it sends no
// WINDOW_UPDATE: the server may send the stream's initial window (64 KiB) and
// then has to keep the rest, which is what is measured (in the server). The
// sessions themselves keep being read (frames, pings), as a browser's would.
// Runs as its own process so that the server's figures hold only the server.
//
//   node bench/h2-slow-client.ts URL CA_FILE SERVERNAME CONNECTIONS STREAMS HOLD_SECONDS
// Prints one JSON line: sessions connected, streams answered (response head received), errors.

import http2 from 'node:http2';
import { readFileSync } from 'node:fs';

const [url, caFile, servername, connArg, streamArg, holdArg] = process.argv.slice(2);
if (url === undefined || caFile === undefined || servername === undefined) {
  console.error('usage: h2-slow-client.ts URL CA_FILE SERVERNAME CONNECTIONS STREAMS HOLD_SECONDS');
  process.exit(2);
}
const ca = readFileSync(caFile, 'utf8');
const connections = Number(connArg ?? 500);
const streams = Number(streamArg ?? 1);
const holdMs = Number(holdArg ?? 15) * 1000;
const target = new URL(url);

let connected = 0;
let answered = 0;
let errors = 0;
const sessions: http2.ClientHttp2Session[] = [];

function open(): Promise<void> {
  return new Promise((resolve) => {
    const session = http2.connect(target.origin, { ca, servername });
    sessions.push(session);
    session.on('error', () => {
      errors++;
      resolve();
    });
    session.once('connect', () => {
      connected++;
      for (let i = 0; i < streams; i++) {
        const req = session.request({ ':path': `${target.pathname}${target.search}`, ':authority': servername });
        req.pause();
        req.once('response', () => answered++);
        req.on('error', () => errors++);
        req.end();
      }
      resolve();
    });
  });
}

// A few at a time, as slowhttptest opens its connections (a burst would measure the handshake queue instead).
for (let i = 0; i < connections; i += 25) {
  await Promise.all(Array.from({ length: Math.min(25, connections - i) }, open));
}
const opened = performance.now();
const report = setInterval(() => console.error(`h2 slow readers: ${connected} sessions, ${answered} streams answered, ${errors} errors`), 2000);
await new Promise((r) => setTimeout(r, Math.max(0, holdMs - (performance.now() - opened))));
clearInterval(report);
console.log(JSON.stringify({ connected, answered, errors }));
for (const s of sessions) s.destroy();
