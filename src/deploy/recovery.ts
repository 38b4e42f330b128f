// After a daemon restart: rebuild each service's live state from the store.
// Interrupted deployments are resolved (see resolveInterrupted() for why each
// case ends as it does), instances that are still the same processes are
// re-adopted, strays are stopped, and what is missing is started.

import { existsSync } from 'node:fs';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { Store } from '../store/index.ts';
import { killStrayGroup } from '../supervisor/index.ts';
import type { ServiceRuntime } from './service-runtime.ts';
import { resolveInterrupted } from './states.ts';

/** How long start-up waits for re-adopted instances to answer before listening (a slow one joins when healthy). */
const ADOPT_HEALTH_WAIT_MS = 5000;

export async function recover(store: Store, logger: Logger, runtimes: ReadonlyMap<string, ServiceRuntime>): Promise<void> {
  resolveDeployments(store, logger);

  const strays: Promise<void>[] = [];
  const waits: Promise<void>[] = [];
  for (const rec of store.listInstances()) {
    const rt = runtimes.get(rec.service);
    const svc = store.getService(rec.service);
    let role: 'current' | 'standby' | null = null;
    if (rt && svc?.currentRelease === rec.release) role = 'current';
    else if (rt && svc?.standbyRelease === rec.release && rt.config.standbyMs > 0) role = 'standby';
    if (!rt || !role) {
      logger.info('stopping stray instance', { instance: rec.id, service: rec.service, release: rec.release, pid: rec.pid });
      const signal = rt?.config.stopSignal ?? 'SIGTERM';
      strays.push(
        killStrayGroup(rec.pid, rec.startTime, signal, rt?.config.stopTimeoutMs ?? 10_000)
          .catch((err) => logger.warn('stopping stray failed', { instance: rec.id, error: errorMessage(err) }))
          .finally(() => store.deleteInstance(rec.id)),
      );
      continue;
    }
    const group = rt.adoptGroup(rec.release, rec.releaseDir, role);
    const inst = rt.adopt(group, rec);
    if (!inst) {
      logger.info('recorded instance is gone', { instance: rec.id, pid: rec.pid });
      store.deleteInstance(rec.id);
      continue;
    }
    if (role === 'current') waits.push(inst.waitHealthy(rt.config.health.startTimeoutMs).catch(() => {}));
  }
  await Promise.all(strays);

  // Services whose current release has no (or too few) live instances: start them.
  for (const rt of runtimes.values()) {
    const svc = store.getService(rt.name);
    if (!svc?.currentRelease) continue;
    let group = rt.current;
    if (!group) {
      const rel = store.getRelease(rt.name, svc.currentRelease);
      if (!rel || !existsSync(rel.dir)) {
        logger.error('current release is missing on disk; deploy again', { service: rt.name, release: svc.currentRelease });
        continue;
      }
      group = rt.adoptGroup(rel.id, rel.dir, 'current');
    }
    if (group.instances.size !== rt.config.instances) logger.info('restoring instance count', { service: rt.name, have: group.instances.size, want: rt.config.instances });
    await rt.scale(group);
    for (const i of group.list()) waits.push(i.waitHealthy(rt.config.health.startTimeoutMs).catch(() => {}));
  }
  // Re-check health before routing: the caller listens only once the adopted
  // instances answered (bounded: a slow one joins the snapshot when it turns healthy).
  await Promise.race([Promise.all(waits), new Promise((r) => setTimeout(r, ADOPT_HEALTH_WAIT_MS).unref())]);
}

function resolveDeployments(store: Store, logger: Logger): void {
  for (const dep of store.activeDeployments()) {
    const svc = store.getService(dep.service);
    const outcome = resolveInterrupted(dep.state, svc?.currentRelease ?? null, dep.toRelease);
    store.updateDeployment(dep.id, {
      state: outcome,
      finishedAt: Date.now(),
      error: outcome === 'failed' ? `interrupted by a daemon restart while ${dep.state}; the switch had not happened` : null,
    });
    store.addDeploymentEvent({
      deploymentId: dep.id,
      step: outcome,
      at: Date.now(),
      level: outcome === 'failed' ? 'warn' : 'info',
      message: outcome === 'done'
        ? `daemon restarted while ${dep.state}: traffic had already moved to ${dep.toRelease}; completed`
        : `daemon restarted while ${dep.state}: traffic had not moved; ${svc?.currentRelease ?? 'nothing'} keeps serving`,
    });
    logger.warn('resolved interrupted deployment', { deployment: dep.seq, service: dep.service, was: dep.state, now: outcome });
  }
}
