// The example app, version 2: any app that listens on $PORT works with baton.
import http from 'node:http';

const VERSION = 'v2';
const server = http.createServer((req, res) => {
  if (req.url === '/healthz') return res.end('ok');
  if (req.url?.startsWith('/slow')) return setTimeout(() => res.end(`hello from ${VERSION} (slow)\n`), 2000);
  res.end(`hello from ${VERSION}\n`);
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`example app ${VERSION} listening on ${process.env.PORT} (release ${process.env.BATON_RELEASE})`);
});
// Graceful stop: finish what is running, then exit.
process.on('SIGTERM', () => server.close(() => process.exit(0)));
