// What the read verbs show: a service's live state (`baton status`), its kept
// releases and its deployments. Read-only views over the runtimes, the store
// and the proxy's figures.

import { BatonError } from '../core/errors.ts';
import type { Proxy } from '../proxy/index.ts';
import type { Store } from '../store/index.ts';
import type { DeploymentInfo, InstanceStatus, ReleaseInfo, ServiceStatus } from '../control/protocol.ts';
import { p99FromHistogram } from '../deploy/analysis.ts';
import { describeStep } from '../deploy/canary.ts';
import type { ServiceRuntime } from '../deploy/service-runtime.ts';

export function serviceStatus(rt: ServiceRuntime, store: Store, proxy: Proxy): ServiceStatus {
  const stats = new Map(proxy.targets().map((t) => [t.id, t]));
  const svc = store.getService(rt.name);
  const instances: InstanceStatus[] = [];
  for (const g of rt.groups) {
    for (const i of g.list()) {
      const s = stats.get(i.id);
      instances.push({
        id: i.id,
        release: i.release,
        role: g.role,
        pid: i.pid,
        port: i.port,
        state: i.state,
        healthy: i.healthy,
        inflight: s?.inflight ?? 0,
        websockets: s?.websockets ?? 0,
        requests: s?.requests ?? 0,
        startedAt: i.startedAt,
        lastHealthError: i.lastHealthError,
      });
    }
  }
  const canary = rt.canary;
  return {
    name: rt.name,
    hosts: rt.config.hosts,
    isDefault: rt.config.isDefault,
    currentRelease: svc?.currentRelease ?? null,
    standbyRelease: svc?.standbyRelease ?? null,
    standbyWarmUntil: rt.standbyUntil,
    deploying: rt.activeDeployment,
    draining: rt.draining().map((d) => {
      const mine = instances.filter((i) => i.role === 'draining' && i.release === d.release);
      const spread = Math.min(rt.config.wsCloseSpreadMs, rt.config.drainTimeoutMs);
      const { deploymentId: seq, ...drain } = d;
      return { ...drain, seq, inflight: mine.reduce((n, i) => n + i.inflight, 0), websockets: mine.reduce((n, i) => n + i.websockets, 0), websocketsCloseFrom: d.deadline - spread };
    }),
    counters: proxy.counters(rt.name),
    shedding: (({ shed, queueTimeouts, queuedNow }) => ({ shed, queueTimeouts, queuedNow }))(proxy.routingCounters(rt.name)),
    instances,
    canary: canary
      ? {
          release: canary.group.release,
          weight: canary.weight,
          step: canary.step + 1,
          steps: canary.steps.map(describeStep),
          waiting: canary.waiting,
        }
      : null,
    maintenance: svc?.maintenance ?? null,
    paused: rt.paused,
    releases: proxy.releaseMetrics(rt.name).map((m) => ({
      release: m.release,
      requests: m.requests,
      status: m.status,
      connectionErrors: m.connectionErrors,
      failed: m.failed,
      appErrors: m.appErrors,
      inflight: m.inflight,
      websockets: m.websockets,
      p99Ms: p99FromHistogram(m.latency.bucketsMs, m.latency.counts),
      latency: { bucketsMs: m.latency.bucketsMs, counts: m.latency.counts },
    })),
  };
}

export function releaseList(rt: ServiceRuntime, store: Store): ReleaseInfo[] {
  const svc = store.getService(rt.name);
  return store.listReleases(rt.name).map((r) => ({
    id: r.id,
    name: r.name,
    kind: r.kind,
    git: r.git,
    buildStatus: r.buildStatus,
    buildMs: r.buildMs,
    sourcePath: r.sourcePath,
    dir: r.dir,
    createdAt: r.createdAt,
    lastDeployedAt: r.lastDeployedAt,
    current: r.id === svc?.currentRelease,
    standby: r.id === svc?.standbyRelease,
  }));
}

/** The newest deployments of a service (or one, by its number in the service), with their events if asked. */
export function deploymentHistory(rt: ServiceRuntime, store: Store, limit: number, withEvents: boolean, seq?: number): DeploymentInfo[] {
  const rows = seq === undefined ? store.listDeployments(rt.name, limit) : [store.getDeploymentBySeq(rt.name, seq)].filter((d) => d !== null);
  if (seq !== undefined && rows.length === 0) throw new BatonError('BAD_REQUEST', `${rt.name} has no deployment #${seq}; see \`baton history ${rt.name}\``);
  return rows.map((d) => ({
    ...d!,
    ...(withEvents
      ? { events: store.listDeploymentEvents(d!.id).map((e) => ({ at: e.at, step: e.step, level: e.level, message: e.message, durationMs: e.durationMs })) }
      : {}),
  }));
}
