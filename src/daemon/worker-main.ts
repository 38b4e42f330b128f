// A proxy worker process (`proxy.workers` > 1): the hot path of the daemon,
// unchanged, in a process of its own. It is started by the control plane
// (src/daemon/workers.ts) with the public listening sockets as inherited fds
// (BATON_LISTEN_FDS, the same map `baton upgrade` uses), takes every routing
// spec it is sent, answers drains, and reports its counters. With `tls:` it
// terminates TLS on the shared TLS sockets too, with copies of the control
// plane's certificates and pending ACME challenges (sent on every change);
// its access log lines go to the control plane, which writes the file. It
// decides nothing: the control plane owns config, store, deployer, supervisor,
// certificates and ACME.

import { errorMessage } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { Proxy } from '../proxy/index.ts';
import type { PlainFront } from '../proxy/listeners.ts';
import { Store } from '../store/index.ts';
import { CertificateStore, ChallengeMirror } from '../tls/index.ts';
import { storedBetaTokens } from './secret.ts';
import { AccessLineBatcher } from './worker-access-log.ts';
import type { FromWorker, ToWorker, WorkerInit, WorkerPlainFront, WorkerReport } from './worker-protocol.ts';

function send(msg: FromWorker): void {
  if (process.connected) process.send!(msg);
}

function report(proxy: Proxy): WorkerReport {
  const totals = proxy.counterTotals();
  const routing: WorkerReport['routing'] = {};
  for (const name of Object.keys(totals.routing)) routing[name] = proxy.routingCounters(name);
  return {
    services: totals.services,
    routing,
    releases: proxy.releaseMetrics(),
    targets: proxy.targets(),
    rss: process.memoryUsage.rss(),
    accessLogDropped: proxy.accessLogStats()?.dropped ?? 0,
  };
}

function plainFront(front: WorkerPlainFront | null, challenges: ChallengeMirror): PlainFront | null {
  if (front === null) return null;
  return { redirectPort: front.redirectPort, challenge: front.http01 ? (token) => challenges.challengeResponse(token) : null };
}

async function run(init: WorkerInit): Promise<void> {
  const logger: Logger = createLogger(init.logLevel, undefined, { component: 'proxy-worker', worker: init.index });
  // One insert per beta link use, atomic across the workers (SQLite WAL, busy timeout): a link works once.
  const store = Store.open(init.dbFile);
  const proxy = new Proxy({ logger, ...init.settings, leanHttp1: init.leanHttp1, betaTokens: storedBetaTokens(store, logger) });
  proxy.setHostHealth(init.hostHealthy);
  // Routed before the first accept: a new worker never serves an older routing than the others.
  proxy.apply(init.spec);
  send({ t: 'applied', version: init.version });
  const certificates = new CertificateStore({ logger });
  certificates.mirror(init.certificates);
  const challenges = new ChallengeMirror();
  challenges.set(init.challenges);
  proxy.setPlainFront(plainFront(init.plainFront, challenges));
  const lines = new AccessLineBatcher((text, count, done) => {
    if (!process.connected) return done();
    process.send!({ t: 'access-lines', text, count } satisfies FromWorker, undefined, {}, () => done());
  });
  // Not awaited: no file is opened here, and the message handler below must be in place before any message can arrive.
  proxy.setAccessLog(init.accessLog, lines.push).catch((err) => logger.error('proxy worker: access log not applied', { error: errorMessage(err) }));
  const drains = new Map<number, AbortController>();
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      clearInterval(timer);
      await proxy.close().catch((err) => logger.error('proxy worker: close failed', { error: errorMessage(err) }));
      lines.flush();
      send({ t: 'report', report: report(proxy) });
      store.close();
      if (process.connected) process.disconnect();
      // Whatever handle might be left must not keep an orphan worker alive.
      setTimeout(() => process.exit(0), 1000).unref();
    })());

  process.on('message', (m: ToWorker) => {
    switch (m.t) {
      case 'apply':
        proxy.apply(m.spec);
        send({ t: 'applied', version: m.version });
        break;
      case 'drain': {
        const abort = new AbortController();
        drains.set(m.id, abort);
        void proxy.drain(m.targetId, m.deadlineMs, abort.signal).then((result) => {
          drains.delete(m.id);
          send({ t: 'drained', id: m.id, result });
        });
        break;
      }
      case 'drain-abort':
        drains.get(m.id)?.abort();
        break;
      case 'forget':
        void proxy.forget(m.targetId);
        break;
      case 'settings':
        proxy.setClientTimeouts(m);
        proxy.setTrustedProxies(m.trustedProxies);
        proxy.setRequestLimits(m.limits);
        proxy.setMaxConnectionsPerClient(m.maxConnectionsPerClient);
        break;
      case 'host-health':
        proxy.setHostHealth(m.healthy);
        break;
      case 'log-level':
        logger.setLevel(m.level);
        break;
      case 'certificates':
        try {
          certificates.mirror(m.set);
        } catch (err) {
          // The control plane loaded the same pairs: this would be a bug, not a bad file. The previous ones stay.
          logger.error('proxy worker: certificates not applied; the previous ones are still served', { error: errorMessage(err) });
        }
        break;
      case 'challenges':
        challenges.set(m.challenges);
        send({ t: 'challenges-applied', id: m.id });
        break;
      case 'plain-front':
        proxy.setPlainFront(plainFront(m.front, challenges));
        break;
      case 'access-log':
        proxy.setAccessLog(m.config, lines.push).catch((err) => logger.error('proxy worker: access log not applied', { error: errorMessage(err) }));
        break;
      case 'close':
        void close();
        break;
      case 'hand-over':
        closing ??= (async () => {
          clearInterval(timer);
          // Only this process's copies of the sockets close: what is queued stays for the new workers.
          await proxy.handOver(m.deadlineMs).done.catch((err) => logger.error('proxy worker: hand-over failed', { error: errorMessage(err) }));
          lines.flush();
          send({ t: 'report', report: report(proxy) });
          store.close();
          if (process.connected) process.disconnect();
          setTimeout(() => process.exit(0), 1000).unref();
        })();
        break;
      case 'init':
        break;
    }
  });
  // The control plane is gone (it crashed or was killed): stop accepting, finish what is open, leave.
  process.on('disconnect', () => void close());
  const timer = setInterval(() => send({ t: 'report', report: report(proxy) }), init.reportEveryMs);
  timer.unref();
  await proxy.listen(init.listeners);
  if (init.tls !== null) {
    const { tlsAlpn01, ...options } = init.tls.options;
    await proxy.listenTls(init.tls.listeners, { ...options, certificates, acmeTlsAlpn: tlsAlpn01 ? challenges : null });
  }
  send({ t: 'ready', pid: process.pid });
}

// The control plane decides when a worker stops (it sends `close`); a Ctrl-C
// reaching the whole process group must not take the workers from under it.
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => undefined);
process.once('message', (m: ToWorker) => {
  if (m.t !== 'init') return;
  run(m).catch((err: unknown) => {
    send({ t: 'failed', message: errorMessage(err) });
    process.stderr.write(`baton proxy worker ${m.index}: ${errorMessage(err)}\n`);
    process.exit(1);
  });
});
