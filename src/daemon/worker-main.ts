// A proxy worker process (`proxy.workers` > 1): the hot path of the daemon,
// unchanged, in a process of its own. It is started by the control plane
// (src/daemon/workers.ts) with the public listening sockets as inherited fds
// (BATON_LISTEN_FDS, the same map `baton upgrade` uses), takes every routing
// spec it is sent, answers drains, and reports its counters. It decides
// nothing: the control plane owns config, store, deployer and supervisor.

import { errorMessage } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { Proxy } from '../proxy/index.ts';
import { Store } from '../store/index.ts';
import { storedBetaTokens } from './secret.ts';
import type { FromWorker, ToWorker, WorkerInit, WorkerReport } from './worker-protocol.ts';

function send(msg: FromWorker): void {
  if (process.connected) process.send!(msg);
}

function report(proxy: Proxy): WorkerReport {
  const totals = proxy.counterTotals();
  const routing: WorkerReport['routing'] = {};
  for (const name of Object.keys(totals.routing)) routing[name] = proxy.routingCounters(name);
  return { services: totals.services, routing, releases: proxy.releaseMetrics(), targets: proxy.targets(), rss: process.memoryUsage.rss() };
}

async function run(init: WorkerInit): Promise<void> {
  const logger: Logger = createLogger(init.logLevel, undefined, { component: 'proxy-worker', worker: init.index });
  // One insert per beta link use, atomic across the workers (SQLite WAL, busy timeout): a link works once.
  const store = Store.open(init.dbFile);
  const proxy = new Proxy({ logger, ...init.settings, betaTokens: storedBetaTokens(store, logger) });
  proxy.setHostHealth(init.hostHealthy);
  // Routed before the first accept: a new worker never serves an older routing than the others.
  proxy.apply(init.spec);
  send({ t: 'applied', version: init.version });
  const drains = new Map<number, AbortController>();
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      clearInterval(timer);
      await proxy.close().catch((err) => logger.error('proxy worker: close failed', { error: errorMessage(err) }));
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
      case 'close':
        void close();
        break;
      case 'hand-over':
        closing ??= (async () => {
          clearInterval(timer);
          // Only this process's copies of the sockets close: what is queued stays for the new workers.
          await proxy.handOver(m.deadlineMs).done.catch((err) => logger.error('proxy worker: hand-over failed', { error: errorMessage(err) }));
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
