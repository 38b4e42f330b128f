// The comparison proxy for bench/proxy.ts: a minimal Node reverse proxy made
// with `http-proxy` and a keep-alive http.Agent, in front of one upstream.
// Prints "listening PORT" once ready.
//
//   node bench/http-proxy-server.ts --target http://127.0.0.1:PORT [--port 0]

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

interface HttpProxyServer {
  web(req: http.IncomingMessage, res: http.ServerResponse): void;
  on(event: 'error', fn: (err: Error, req: http.IncomingMessage, res: http.ServerResponse) => void): void;
}
const require = createRequire(import.meta.url);
const httpProxy = require('http-proxy') as { createProxyServer(opts: { target: string; agent: http.Agent; xfwd?: boolean }): HttpProxyServer };

const { values } = parseArgs({ options: { target: { type: 'string' }, port: { type: 'string', default: '0' } } });
if (!values.target) {
  console.error('usage: node bench/http-proxy-server.ts --target URL [--port N]');
  process.exit(2);
}

const agent = new http.Agent({ keepAlive: true, keepAliveMsecs: 1000, maxSockets: Infinity, maxFreeSockets: 256 });
const proxy = httpProxy.createProxyServer({ target: values.target, agent, xfwd: true });
proxy.on('error', (_err, _req, res) => {
  if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
  res.end('bad gateway\n');
});
const server = http.createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 60_000;
server.listen(Number(values.port), '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
});
