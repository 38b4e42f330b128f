// A floor for baton's stack, for bench/proxy.ts: the smallest reverse proxy on
// the same parts baton uses (node:http server + an undici Pool driven through
// dispatch handlers), with none of baton's logic (no routing snapshot, balancer,
// retries, header rules, counters). Prints "listening PORT" once ready.
//
//   node bench/undici-proxy-server.ts --target http://127.0.0.1:PORT [--port 0]

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Pool, type Dispatcher } from 'undici';

const { values } = parseArgs({ options: { target: { type: 'string' }, port: { type: 'string', default: '0' } } });
if (!values.target) {
  console.error('usage: node bench/undici-proxy-server.ts --target URL [--port N]');
  process.exit(2);
}
const pool = new Pool(values.target, { pipelining: 1, keepAliveTimeout: 1000 });
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer']);

const server = http.createServer((req, res) => {
  const headers: string[] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) if (!HOP.has(raw[i]!.toLowerCase())) headers.push(raw[i]!, raw[i + 1]!);
  const handler: Dispatcher.DispatchHandler = {
    onRequestStart() {},
    onResponseStart(_c, statusCode, h) {
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP.has(k)) out[k] = v;
      res.writeHead(statusCode, out);
    },
    onResponseData(c, chunk) {
      if (!res.write(chunk)) {
        c.pause();
        res.once('drain', () => c.resume());
      }
    },
    onResponseEnd() {
      res.end();
    },
    onResponseError(_c, err) {
      if (process.env["DEBUG_PROXY"]) console.error(err);
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    },
  };
  pool.dispatch({ method: req.method ?? 'GET', path: req.url ?? '/', headers, body: req.method === 'GET' || req.method === 'HEAD' ? null : req }, handler);
});
server.keepAliveTimeout = 60_000;
server.listen(Number(values.port), '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
});
