// A rolling deploy of one service across the fleet, and the fleet-level
// revert. The procedure, in the order it happens:
//   preflight every host (nothing is touched if one fails) → take the fleet
//   lock → ship the one artifact to every host (sha256 checked there) →
//   switch the hosts batch by batch, each with its own local zero-downtime
//   deploy (the first host alone: it runs the migrations, once for the
//   fleet), each batch held for the bake time with its health gates.
// When a host fails (its deploy, its health while baking, its ssh connection)
// the rollout stops and every host already switched goes back to its
// previous release, which is still running warm there: a local instant
// switch, run on all of them at once. The record of the rollout is written at
// every change (state.ts), so a paused or interrupted rollout can be resumed
// or aborted.

import { hostname, userInfo } from 'node:os';
import { randomBytes } from 'node:crypto';
import { BatonError, errorMessage, isBatonError } from '../core/errors.ts';
import { formatDuration } from '../core/time.ts';
import { VERSION } from '../core/version.ts';
import type { DeployEvent } from '../core/deployment.ts';
import type { ReleaseFigures, StatusResponse } from '../control/protocol.ts';
import { judge, p99FromHistogram, type Verdict, type WindowFigures } from '../deploy/analysis.ts';
import type { Artifact } from './artifact.ts';
import type { Balancer } from './balancer.ts';
import type { FleetAnalysis, FleetConfig, RolloutPolicy } from './config.ts';
import { allWithLimit, settledWithLimit } from './limit.ts';
import { planBatches } from './plan.ts';
import type { RemoteHost } from './remote.ts';
import { writeRollout, type HostPhase, type HostRecord, type RolloutRecord } from './state.ts';

/** What the rollout tells the operator (printed as lines, or as JSON with --json). */
export type FleetEvent =
  | { type: 'plan'; rollout: string; service: string; artifact: RolloutRecord['artifact']; batches: RolloutRecord['batches'] }
  | { type: 'host'; host: string; phase: HostPhase; at: number; sinceStartMs: number; message?: string }
  | { type: 'phase'; phase: string; ms: number; message?: string }
  | { type: 'info'; message: string };

export interface PreflightResult {
  host: string;
  version: string;
  currentRelease: string | null;
  freeBytes: number;
}

function operator(): string {
  const user = process.env['USER'] ?? process.env['LOGNAME'] ?? userInfo().username;
  return `${user}@${hostname()}`;
}

function majorMinor(v: string): string {
  return v.split('.').slice(0, 2).join('.');
}

/** Every host: reachable, baton there and compatible, the service configured, room for the artifact. Changes nothing. */
export async function preflight(hosts: RemoteHost[], service: string, needBytes: number, maxParallel = 10): Promise<PreflightResult[]> {
  const results = await settledWithLimit(hosts, maxParallel, async (h): Promise<PreflightResult> => {
    await h.ssh.connect();
    let st: StatusResponse;
    try {
      st = await h.open();
    } catch (err) {
      if (isBatonError(err) && err.code === 'FLEET_PREFLIGHT_FAILED') throw err;
      // Tell "no baton there" from "baton there, its daemon down".
      const version = await h.version();
      throw new BatonError('FLEET_PREFLIGHT_FAILED', `${h.name}: baton ${version} is there but its daemon does not answer: ${errorMessage(err)}`);
    }
    const version = st.daemon.version;
    if (majorMinor(version) !== majorMinor(VERSION)) {
      throw new BatonError('FLEET_PREFLIGHT_FAILED', `${h.name}: baton ${version} is not compatible with this baton ${VERSION} (same major.minor needed)`);
    }
    const svc = st.services.find((s) => s.name === service);
    if (!svc) throw new BatonError('FLEET_PREFLIGHT_FAILED', `${h.name}: no service "${service}" in ${st.daemon.config} (services: ${st.services.map((s) => s.name).join(', ') || 'none'})`);
    if (svc.deploying !== null) throw new BatonError('FLEET_PREFLIGHT_FAILED', `${h.name}: a deployment of ${service} is running there (#${svc.deploying})`);
    const freeBytes = await h.freeBytes();
    if (freeBytes < Math.max(h.cfg.minFreeBytes, needBytes * 3)) {
      throw new BatonError('FLEET_PREFLIGHT_FAILED', `${h.name}: only ${Math.round(freeBytes / 1024 ** 2)} MB free in ${h.cfg.artifacts} (needs ${Math.round(Math.max(h.cfg.minFreeBytes, needBytes * 3) / 1024 ** 2)} MB)`);
    }
    return { host: h.name, version, currentRelease: svc.currentRelease, freeBytes };
  });
  const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [`${hosts[i]!.name}: ${stripHost(errorMessage(r.reason), hosts[i]!.name)}`] : []));
  if (failed.length) {
    throw new BatonError('FLEET_PREFLIGHT_FAILED', `preflight failed on ${failed.length} of ${hosts.length} host${hosts.length === 1 ? '' : 's'}; nothing was changed`, failed);
  }
  return results.map((r) => (r as PromiseFulfilledResult<PreflightResult>).value);
}

function stripHost(msg: string, host: string): string {
  return msg.startsWith(`${host}: `) ? msg.slice(host.length + 2) : msg;
}

export function newRollout(cfg: FleetConfig, service: string, hosts: RemoteHost[], artifact: Artifact, policy: RolloutPolicy): RolloutRecord {
  const batches = planBatches(hosts.map((h) => h.name), { canary: policy.canary, batch: policy.batch });
  const rec: RolloutRecord = {
    id: `${new Date().toISOString().replace(/[-:]/g, '').slice(0, 15)}-${randomBytes(3).toString('hex')}`,
    fleet: cfg.name,
    fleetFile: cfg.file,
    service,
    artifact: { name: artifact.name, sha256: artifact.sha256, bytes: artifact.bytes, source: artifact.source },
    operator: operator(),
    createdAt: Date.now(),
    status: 'running',
    batches,
    options: { bakeMs: policy.bakeMs, revert: policy.revert, drain: policy.drain, maxFailures: policy.maxFailures, healthyDeadlineMs: policy.healthyDeadlineMs, analysis: policy.analysis },
    migrationHost: batches[0]?.hosts[0] ?? '',
    migrated: false,
    hosts: {},
    phases: {},
    error: null,
    revertMs: null,
  };
  for (const h of hosts) rec.hosts[h.name] = { phase: 'queued', from: null, to: null, history: [{ phase: 'queued', at: Date.now() }], error: null, drained: false };
  return rec;
}

const SWITCHED: ReadonlySet<HostPhase> = new Set(['switched', 'baking', 'done']);

export class Rollout {
  readonly rec: RolloutRecord;
  readonly #hosts: Map<string, RemoteHost>;
  readonly #balancer: Balancer | null;
  readonly #emit: (e: FleetEvent) => void;
  readonly #t0 = Date.now();
  #pauseRequested = false;
  #saving: Promise<void> = Promise.resolve();

  constructor(rec: RolloutRecord, hosts: RemoteHost[], balancer: Balancer | null, emit: (e: FleetEvent) => void) {
    this.rec = rec;
    this.#hosts = new Map(hosts.map((h) => [h.name, h]));
    // Each host's history names who deployed, from where, in which rollout.
    for (const h of hosts) h.actor = `${rec.operator} (baton fleet, rollout ${rec.id})`;
    this.#balancer = balancer;
    this.#emit = emit;
  }

  /** Ctrl-C: stop after the hosts in progress have finished their step. */
  requestPause(): void {
    this.#pauseRequested = true;
  }

  save(): Promise<void> {
    // Writes are serialised: the last state always lands last.
    this.#saving = this.#saving.then(() => writeRollout(this.rec));
    return this.#saving;
  }

  #host(name: string): RemoteHost {
    const h = this.#hosts.get(name);
    if (!h) throw new BatonError('INTERNAL', `no host ${name} in the rollout`);
    return h;
  }

  #set(name: string, phase: HostPhase, message?: string): void {
    const r = this.rec.hosts[name]!;
    if (r.phase === phase && !message) return;
    r.phase = phase;
    if (phase === 'failed' && message) r.error = message;
    r.history.push({ phase, at: Date.now() });
    this.#emit({ type: 'host', host: name, phase, at: Date.now(), sinceStartMs: Date.now() - this.#t0, ...(message ? { message } : {}) });
    void this.save();
  }

  async #timed<T>(phase: string, f: () => Promise<T>): Promise<T> {
    const t = Date.now();
    try {
      return await f();
    } finally {
      const ms = Date.now() - t;
      this.rec.phases[phase] = (this.rec.phases[phase] ?? 0) + ms;
      this.#emit({ type: 'phase', phase, ms });
    }
  }

  /** Ship the artifact to every host that does not have it yet (in parallel). */
  async ship(artifact: Artifact, maxParallel: number): Promise<void> {
    await this.#timed('ship', () => allWithLimit(Object.keys(this.rec.hosts), maxParallel, async (name) => {
      if (this.rec.hosts[name]!.phase !== 'queued') return;
      this.#set(name, 'shipping');
      const how = await this.#host(name).ship(artifact);
      this.#set(name, 'shipped', how === 'present' ? 'already on the host' : `${artifact.bytes} bytes, sha256 checked`);
    }).then(() => undefined));
  }

  /** Switch the hosts still to switch, batch by batch. Resolves with the rollout's status. */
  async run(): Promise<RolloutRecord['status']> {
    this.rec.status = 'running';
    await this.save();
    let failures = Object.values(this.rec.hosts).filter((h) => h.phase === 'failed').length;
    for (const [i, batch] of this.rec.batches.entries()) {
      const todo = batch.hosts.filter((h) => !SWITCHED.has(this.rec.hosts[h]!.phase) && this.rec.hosts[h]!.phase !== 'failed');
      if (todo.length === 0) continue;
      if (this.#pauseRequested) return this.#pause();
      const label = batch.canary ? 'canary' : `batch ${i + 1}`;
      const results = await this.#timed(`switch ${label}`, () => Promise.allSettled(todo.map((h) => this.#switchHost(h))));
      const failedNow = results.flatMap((r, j) => (r.status === 'rejected' ? [{ host: todo[j]!, why: errorMessage(r.reason) }] : []));
      for (const f of failedNow) this.#set(f.host, 'failed', f.why);
      failures += failedNow.length;
      if (failures > this.rec.options.maxFailures) return this.#fail(failedNow.map((f) => `${f.host}: ${f.why}`).join('; '));
      const baked = todo.filter((h) => this.rec.hosts[h]!.phase === 'switched');
      const analysis = batch.canary ? this.rec.options.analysis ?? null : null;
      if ((this.rec.options.bakeMs > 0 || analysis) && baked.length > 0) {
        const before = analysis ? await this.#figures(baked) : null;
        const bakeFail = await this.#timed(`bake ${label}`, () => this.#bake(baked));
        if (analysis && before && bakeFail.length === 0) {
          const v = await this.#judge(baked, before, analysis);
          this.#emit({ type: 'info', message: `analysis of ${baked.join(', ')} against the other hosts: ${v.result}: ${v.reasons.join('; ')}` });
          if (v.result === 'fail') bakeFail.push(...baked.map((host) => ({ host, why: `canary analysis failed: ${v.reasons[0]}` })));
          if (v.result === 'inconclusive') {
            for (const h of baked) this.#set(h, 'done');
            this.rec.error = `canary analysis inconclusive: ${v.reasons[0]}`;
            return this.#pause();
          }
        }
        if (bakeFail.length) {
          for (const f of bakeFail) this.#set(f.host, 'failed', f.why);
          failures += bakeFail.length;
          if (failures > this.rec.options.maxFailures) return this.#fail(bakeFail.map((f) => `${f.host}: ${f.why}`).join('; '));
        }
      }
      for (const h of baked) if (this.rec.hosts[h]!.phase !== 'failed') this.#set(h, 'done');
    }
    this.rec.status = 'done';
    await this.save();
    return 'done';
  }

  async #pause(): Promise<'paused'> {
    this.rec.status = 'paused';
    this.#emit({ type: 'info', message: 'paused: no host is in progress; `baton fleet resume` goes on, `baton fleet abort` reverts the switched hosts' });
    await this.save();
    return 'paused';
  }

  async #fail(why: string): Promise<RolloutRecord['status']> {
    this.rec.error = why;
    for (const [name, h] of Object.entries(this.rec.hosts)) if (h.phase === 'queued' || h.phase === 'shipped') this.#set(name, 'untouched');
    if (!this.rec.options.revert) {
      this.rec.status = 'failed';
      this.#emit({ type: 'info', message: 'stopped; --no-revert: the switched hosts stay on the new release (`baton fleet abort` reverts them)' });
      await this.save();
      return 'failed';
    }
    await this.revert();
    return this.rec.status;
  }

  /** Every switched host back to its previous release, at once. */
  async revert(): Promise<void> {
    const t = Date.now();
    const known = Object.entries(this.rec.hosts).filter(([, h]) => SWITCHED.has(h.phase) || h.phase === 'reverting' || (h.phase === 'failed' && h.to !== null)).map(([n]) => n);
    const uncertain = Object.entries(this.rec.hosts).filter(([, h]) => h.phase === 'failed' && h.to === null).map(([n]) => n);
    const reverted: string[] = [];
    const bad: string[] = [];
    let lastBack = t;
    const back = async (name: string): Promise<void> => {
      reverted.push(name);
      try {
        this.#set(name, 'reverting');
        const out = await this.#host(name).rollback(this.rec.service, () => {});
        if (out.state !== 'done' && out.state !== 'switched') throw new BatonError('FLEET_ROLLOUT_FAILED', `rollback ended ${out.state}: ${out.error?.message ?? ''}`);
        this.rec.hosts[name]!.to = out.toRelease;
        this.#set(name, 'reverted', `back on ${out.toRelease} in ${formatDuration(out.durationMs)}`);
      } catch (err) {
        bad.push(`${name}: ${errorMessage(err)}`);
        this.#set(name, 'failed', `revert failed: ${errorMessage(err)}`);
      }
      lastBack = Date.now();
    };
    // A host that failed without an answer (ssh lost, deadline passed) may have
    // switched after all: it is asked while the known ones already go back.
    const ask = async (name: string): Promise<void> => {
      try {
        const svc = (await this.#host(name).status()).services.find((x) => x.name === this.rec.service);
        if (svc?.currentRelease?.includes(this.rec.artifact.name)) {
          this.rec.hosts[name]!.to = svc.currentRelease;
          await back(name);
        }
      } catch {
        // unreachable: its error already says so, and it is reported as failed
      }
    };
    await this.#timed('revert', () => Promise.all([...known.map(back), ...uncertain.map(ask)]).then(() => undefined));
    // From the decision to the last host back (not to the end of the questions to hosts that did not switch).
    this.rec.revertMs = reverted.length ? lastBack - t : 0;
    // A drained host that failed goes back into rotation on its old release.
    await this.#undrainLeftovers();
    this.rec.status = bad.length ? 'failed' : 'reverted';
    if (bad.length) this.rec.error = `${this.rec.error ?? ''}; revert failed on ${bad.join('; ')}`;
    await this.save();
  }

  async #undrainLeftovers(): Promise<void> {
    if (!this.#balancer) return;
    await Promise.allSettled(Object.entries(this.rec.hosts).filter(([, h]) => h.drained).map(async ([name, h]) => {
      await this.#balancer!.undrain(this.#host(name), null, `fleet rollout ${this.rec.id} ended`);
      h.drained = false;
    }));
  }

  async #switchHost(name: string): Promise<void> {
    const host = this.#host(name);
    const rec: HostRecord = this.rec.hosts[name]!;
    if (this.rec.options.drain && this.#balancer) {
      this.#set(name, 'draining');
      rec.drained = true;
      await this.save();
      const ms = await this.#balancer.drain(host, 'drain', `fleet rollout ${this.rec.id}`);
      this.#emit({ type: 'info', message: `${name}: drained from the balancer in ${formatDuration(ms)}` });
    }
    const first = name === this.rec.migrationHost && !this.rec.migrated;
    this.#set(name, 'building');
    const outcome = await host.deploy(this.rec.service, this.rec.artifact, { skipMigrate: !first, timeoutMs: this.rec.options.healthyDeadlineMs }, (e: DeployEvent) => {
      if (e.type !== 'step') return;
      if (e.step === 'starting' || e.step === 'verifying') this.#set(name, 'starting');
      else if (e.step === 'shifting') this.#set(name, 'switching');
    });
    if (first) this.rec.migrated = outcome.state === 'done' || outcome.state === 'switched' || outcome.switchAfterMs !== null;
    if (outcome.state !== 'done' && outcome.state !== 'switched') {
      throw new BatonError('FLEET_ROLLOUT_FAILED', `deploy ${outcome.state}: ${outcome.error?.message ?? 'no reason given'}`);
    }
    rec.from = outcome.fromRelease;
    rec.to = outcome.toRelease;
    this.#set(name, 'switched', `${outcome.fromRelease ?? '(none)'} → ${outcome.toRelease}, switched after ${formatDuration(outcome.switchAfterMs ?? outcome.durationMs)}`);
    if (rec.drained && this.#balancer) {
      await this.#balancer.undrain(host, null, `fleet rollout ${this.rec.id}`);
      rec.drained = false;
    }
  }

  /** Each host's cumulative figures of the release it serves (canaries: the new one; the others: theirs). */
  async #figures(canaries: string[]): Promise<Map<string, ReleaseFigures | undefined>> {
    const out = new Map<string, ReleaseFigures | undefined>();
    const others = Object.entries(this.rec.hosts).filter(([n, h]) => !canaries.includes(n) && !SWITCHED.has(h.phase) && h.phase !== 'failed').map(([n]) => n);
    await Promise.all([...canaries, ...others].map(async (n) => {
      try {
        const svc = (await this.#host(n).status()).services.find((s) => s.name === this.rec.service);
        out.set(n, svc?.releases.find((r) => r.release === svc.currentRelease));
      } catch {
        out.set(n, undefined);
      }
    }));
    return out;
  }

  /**
   * The canary hosts' 5xx, connection errors and p99 latency over the bake,
   * against the other hosts' over the same time. The p99 is taken from the sum
   * of each side's latency histograms over the window (two samples of each
   * daemon's cumulative histogram), not from cumulative p99s, which would
   * remember everything before the bake. A host that reports no histogram (an
   * older baton) leaves latency out of the verdict for its side.
   */
  async #judge(canaries: string[], before: Map<string, ReleaseFigures | undefined>, a: FleetAnalysis): Promise<Verdict> {
    const after = await this.#figures(canaries);
    const sum = (names: string[]): WindowFigures => {
      let requests = 0;
      let errors5xx = 0;
      let connectionErrors = 0;
      let hist: { bucketsMs: readonly number[]; counts: number[] } | null = null;
      let histComplete = true;
      for (const n of names) {
        const b = before.get(n);
        const x = after.get(n);
        if (!x) continue;
        // A figure that went down belongs to another release (or a restarted daemon): count from 0.
        const same = b && b.release === x.release && b.requests <= x.requests;
        requests += x.requests - (same ? b.requests : 0);
        errors5xx += x.status['5xx'] - (same ? b.status['5xx'] : 0);
        connectionErrors += x.connectionErrors - (same ? b.connectionErrors : 0);
        const lat = x.latency;
        if (lat === undefined || (hist !== null && hist.bucketsMs.join() !== lat.bucketsMs.join())) {
          histComplete = false;
          continue;
        }
        const base = same ? b.latency : undefined;
        hist ??= { bucketsMs: lat.bucketsMs, counts: lat.counts.map(() => 0) };
        for (let i = 0; i < lat.counts.length; i++) hist.counts[i]! += (lat.counts[i] ?? 0) - (base?.counts[i] ?? 0);
      }
      const p99Ms = hist !== null && histComplete ? p99FromHistogram(hist.bucketsMs, hist.counts) : null;
      return { requests, errors5xx, errorRate: requests ? errors5xx / requests : 0, connectionErrors, connectionErrorRate: requests ? connectionErrors / requests : 0, p99Ms };
    };
    const others = [...after.keys()].filter((n) => !canaries.includes(n));
    return judge(sum(canaries), sum(others), {
      windowMs: this.rec.options.bakeMs,
      minRequests: a.minRequests,
      maxErrorRate: a.maxErrorRate,
      maxConnectionErrorRate: a.maxConnectionErrorRate,
      maxP99Ratio: a.maxP99Ratio,
      p99FloorMs: a.p99FloorMs,
      check: null,
    });
  }

  /** Hold the batch for the bake time: every host must stay on the new release with all its instances healthy. */
  async #bake(names: string[]): Promise<{ host: string; why: string }[]> {
    for (const n of names) this.#set(n, 'baking');
    const end = Date.now() + this.rec.options.bakeMs;
    const failed = new Map<string, string>();
    while (Date.now() < end && failed.size < names.length) {
      await Promise.all(names.filter((n) => !failed.has(n)).map(async (n) => {
        try {
          const st = await this.#host(n).status();
          const svc = st.services.find((s) => s.name === this.rec.service);
          const want = this.rec.hosts[n]!.to;
          if (!svc || svc.currentRelease !== want) failed.set(n, `left the new release while baking (now ${svc?.currentRelease ?? 'none'})`);
          else {
            const cur = svc.instances.filter((i) => i.role === 'current');
            if (cur.length === 0 || cur.some((i) => !i.healthy)) failed.set(n, `unhealthy while baking: ${cur.map((i) => `${i.id} ${i.state}${i.lastHealthError ? ` (${i.lastHealthError})` : ''}`).join(', ') || 'no instance'}`);
          }
        } catch (err) {
          failed.set(n, `lost while baking: ${errorMessage(err)}`);
        }
      }));
      await new Promise((r) => setTimeout(r, Math.min(500, Math.max(0, end - Date.now()))));
    }
    return [...failed].map(([host, why]) => ({ host, why }));
  }
}
