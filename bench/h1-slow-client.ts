// HTTPS/1.1 slow readers from Node's own TLS client, for bench/tls.ts: what
// slowhttptest -X does (a request for a large response, then reading none of
// it), but with the ClientHello of a current client. slowhttptest links
// Debian's OpenSSL 3.0, whose ClientHello is ~300 bytes; Node 24's (OpenSSL
// 3.5) and current browsers' carry a post-quantum key share and are ~1.6 KB,
// which matters to how Node's TLS server sizes a connection's buffers
// (src/proxy/listeners.ts, handInPieces). Runs as its own process so that the
// server's figures hold only the server.
//
//   node bench/h1-slow-client.ts URL CA_FILE SERVERNAME CONNECTIONS HOLD_SECONDS
// Prints one JSON line: connections connected, answered (response head received), errors.

import tls from 'node:tls';
import { readFileSync } from 'node:fs';

const [url, caFile, servername, connArg, holdArg] = process.argv.slice(2);
if (url === undefined || caFile === undefined || servername === undefined) {
  console.error('usage: h1-slow-client.ts URL CA_FILE SERVERNAME CONNECTIONS HOLD_SECONDS');
  process.exit(2);
}
const ca = readFileSync(caFile, 'utf8');
const connections = Number(connArg ?? 500);
const holdMs = Number(holdArg ?? 15) * 1000;
const target = new URL(url);

let connected = 0;
let answered = 0;
let errors = 0;
const sockets: tls.TLSSocket[] = [];

function open(): Promise<void> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: target.hostname, port: Number(target.port), ca, servername, ALPNProtocols: ['http/1.1'] });
    sockets.push(socket);
    socket.on('error', () => {
      errors++;
      resolve();
    });
    socket.once('secureConnect', () => {
      connected++;
      socket.write(`GET ${target.pathname}${target.search} HTTP/1.1\r\nhost: ${servername}\r\nuser-agent: h1-slow-client\r\n\r\n`);
      // The first bytes of the answer are read (its head: the request was answered), then nothing more.
      socket.once('data', () => {
        answered++;
        socket.pause();
      });
      resolve();
    });
  });
}

// A few at a time, as slowhttptest opens its connections (a burst would measure the handshake queue instead).
for (let i = 0; i < connections; i += 25) {
  await Promise.all(Array.from({ length: Math.min(25, connections - i) }, open));
}
const opened = performance.now();
const report = setInterval(() => console.error(`h1 slow readers: ${connected} connected, ${answered} answered, ${errors} errors`), 2000);
await new Promise((r) => setTimeout(r, Math.max(0, holdMs - (performance.now() - opened))));
clearInterval(report);
console.log(JSON.stringify({ connected, answered, errors }));
for (const s of sockets) s.destroy();
