// Blue/green deployments, rollbacks and restarts of one service: start the new
// instances beside the old, wait until they are healthy, switch traffic in one
// step, drain the old, keep them as a warm standby. Every step is written to the
// store before it is acted on and streamed to the caller as an event.
//
// The invariant: traffic only ever moves to a group whose every instance has
// passed its health check, and an instance is only stopped once it is out of
// the routing snapshot and drained (in-flight zero or drain deadline passed).

import { rm } from 'node:fs/promises';
import path from 'node:path';
import { BatonError, errorMessage, isBatonError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { formatDuration } from '../core/time.ts';
import type { Proxy } from '../proxy/index.ts';
import type { DeploymentKey, Store } from '../store/index.ts';
import type { ReleaseGroup } from './release-group.ts';
import { pruneStoppedLogs } from '../supervisor/index.ts';
import { releasesDir, releasesToPrune, strayReleaseDirs } from './releases.ts';
import type { ServiceRuntime } from './service-runtime.ts';
import { assertTransition, isTerminal, type DeploymentState } from './states.ts';
import { linkShared, runMigration, runServiceHook, type HookContext, type StepReporter } from './prepare.ts';
import { shareReleaseWith } from './release-owner.ts';
import { CanaryRun, describeStep, type CanarySignal } from './canary.ts';
import { judge, windowFigures, type Verdict } from './analysis.ts';
import type { ReleaseMetrics } from '../proxy/types.ts';
import type { CanaryStep } from '../config/types.ts';

export type { DeploymentKind, DeployEvent, DeployOutcome, RunHooks } from '../core/deployment.ts';
import type { DeploymentKind, DeployEvent, DeployOutcome, RunHooks } from '../core/deployment.ts';

export interface DeployPlan {
  kind: DeploymentKind;
  release: { id: string; dir: string };
  actor: string;
  /** First work of the 'preparing' step: make the release directory exist (copy a directory, export a commit). */
  materialise?: (report: StepReporter) => Promise<void>;
  /** blue_green (default): all traffic at once; canary: step by step (deploys only). */
  strategy?: 'blue_green' | 'canary';
  /** A fleet rollout ran the migrate hook once on another host. */
  skipMigrate?: boolean;
  /** This deploy's canary plan (`--steps`), instead of the configured one. */
  steps?: CanaryStep[];
}

export interface DeployerDeps {
  store: Store;
  proxy: Proxy;
  logger: Logger;
  stateDir: string;
}

export class Deployer {
  readonly #d: DeployerDeps;

  constructor(deps: DeployerDeps) {
    this.#d = deps;
  }

  /**
   * Record an operation the service refused (a rollback while a deploy starts,
   * say): a line in the daemon's log and a deployment in state 'refused' that
   * `baton history` shows. Returns the error to give the caller.
   */
  refused(rt: ServiceRuntime, kind: DeploymentKind, toRelease: string, actor: string, err: BatonError): BatonError {
    const { store } = this.#d;
    const now = Date.now();
    const seq = store.transaction(() => {
      const { id, seq } = store.createDeployment({ service: rt.name, kind, fromRelease: rt.current?.release ?? null, toRelease, actor });
      store.updateDeployment(id, { state: 'refused', finishedAt: now, error: err.message });
      store.addDeploymentEvent({ deploymentId: id, step: 'refused', message: err.message, at: now, level: 'warn' });
      return seq;
    });
    this.#d.logger.warn(`${kind} refused`, { service: rt.name, deployment: seq, release: toRelease, actor, code: err.code, reason: err.message });
    return err;
  }

  /** Run a deployment. The caller may hold the service's reservation (see ServiceRuntime.reserve()). */
  async run(rt: ServiceRuntime, plan: DeployPlan, emit: (e: DeployEvent) => void, hooks: RunHooks = {}): Promise<DeployOutcome> {
    if (rt.activeDeployment !== null) rt.assertIdle();
    const { store, proxy } = this.#d;
    const svc = rt.config;
    const fromRelease = rt.current?.release ?? null;
    // `id` keys the store's rows; `seq` (web#12) is how everything else names the deployment.
    const { id, seq } = store.createDeployment({ service: rt.name, kind: plan.kind, fromRelease, toRelease: plan.release.id, actor: plan.actor });
    const cancelled = rt.begin(seq);
    const log = this.#d.logger.child({ service: rt.name, deployment: seq });
    const started = Date.now();
    const before = proxy.counters(rt.name);
    let state: DeploymentState = 'planned';
    let stepStarted = started;
    let switchAt: number | null = null;
    let group: ReleaseGroup | null = null;
    let reused = false;

    const say = (type: DeployEvent['type'], message: string, extra: Partial<DeployEvent> = {}): void => {
      const ev: DeployEvent = { type, deploymentId: id, seq, step: state, message, at: Date.now(), ...extra };
      if (type === 'output') {
        emit(ev);
        return;
      }
      store.addDeploymentEvent({
        deploymentId: id,
        step: state,
        message: ev.details?.length ? `${message}\n${ev.details.join('\n')}` : message,
        at: ev.at,
        durationMs: ev.durationMs ?? null,
        level: type === 'step' ? 'info' : type,
      });
      log[type === 'step' ? 'info' : (type as 'info' | 'warn' | 'error')](message, { step: state });
      emit(ev);
    };
    const move = (to: DeploymentState, message: string): void => {
      assertTransition(state, to);
      const now = Date.now();
      const spent = now - stepStarted;
      state = to;
      stepStarted = now;
      store.updateDeployment(id, { state: to });
      say('step', message, { durationMs: spent });
    };
    /** Before the switch, a cancel (`baton abort`, the CLI's Ctrl-C) ends any wait at once. */
    const unlessCancelled = <T>(p: Promise<T>): Promise<T> => {
      if (cancelled.aborted) return Promise.reject(cancelled.reason);
      let off = (): void => {};
      const stop = new Promise<never>((_, reject) => {
        const on = (): void => reject(cancelled.reason);
        cancelled.addEventListener('abort', on, { once: true });
        off = () => cancelled.removeEventListener('abort', on);
      });
      return Promise.race([p, stop]).finally(off);
    };
    const checkpoint = (): void => {
      if (cancelled.aborted) throw cancelled.reason;
    };

    const report: StepReporter = {
      info: (message, durationMs) => say('info', message, durationMs === undefined ? {} : { durationMs }),
      warn: (message, details) => say('warn', message, details ? { details } : {}),
      output: (line) => say('output', line),
    };
    const hookCtx: HookContext = {
      stateDir: this.#d.stateDir,
      service: svc,
      deploymentId: seq,
      release: plan.release,
      previousRelease: fromRelease,
      signal: cancelled,
    };

    try {
      move('preparing', `${plan.kind} ${rt.name}#${seq}: ${fromRelease ?? '(nothing)'} → ${plan.release.id}`);
      // A release still running unrouted (draining, or the warm standby) is switched to as it is:
      // no new instances, no build, no migration (as a rollback does, whatever the verb).
      const warm = plan.kind === 'restart' ? null : rt.warmGroup(plan.release.id);
      const warmWas = warm ? { role: warm.role, drain: rt.draining().find((d) => d.release === warm.release) ?? null } : null;
      if (warm) rt.claim(warm, seq);
      if (plan.materialise) await unlessCancelled(plan.materialise(report));
      if (!warm) await this.#prepare(rt, plan, hookCtx, report);
      checkpoint();

      if (warm && warmWas) {
        group = warm;
        reused = true;
        move('starting', warmWas.drain
          ? `release ${plan.release.id} is still running (draining after deployment #${warmWas.drain.deploymentId}): routing to its ${warm.instances.size} instance(s) again`
          : `release ${plan.release.id} is a warm standby: reusing its ${warm.instances.size} running instance(s)`);
      } else {
        move('starting', `starting ${svc.instances} instance(s) of ${plan.release.id}`);
        group = rt.newGroup(plan.release.id, plan.release.dir);
        const insts = await rt.startGroup(group, svc.instances);
        for (const i of insts) say('info', `instance ${i.id} started: pid ${i.pid}, port ${i.port}`);
      }
      checkpoint();

      move('verifying', `waiting for ${group.instances.size} instance(s) to pass health checks on ${svc.health.path}`);
      const g = group;
      if (!(reused && g.allHealthy())) {
        await unlessCancelled(Promise.all(g.list().map((i) => i.waitHealthy(reused ? Math.max(svc.health.timeoutMs * 2, 2000) : svc.health.startTimeoutMs))));
      }
      if (group.instances.size === 0) throw new BatonError('DEPLOY_FAILED', `no instance of ${plan.release.id} is running`);
      say('info', `all ${group.instances.size} instance(s) healthy`, { durationMs: Date.now() - stepStarted });
      if (svc.hooks.smoke && plan.kind === 'deploy' && !reused) {
        const targets = group.list().map((i) => ({ id: i.id, release: i.release, host: '127.0.0.1', port: i.port }));
        const preview = await proxy.openPreview(rt.name, targets, svc.balance, svc.upstream);
        try {
          say('info', `smoke test against the new release only, at ${preview.url}`);
          await runServiceHook('smoke', svc.hooks.smoke, { ...hookCtx, extraEnv: { BATON_PREVIEW_URL: preview.url } }, report);
        } finally {
          await preview.close();
        }
      }
      checkpoint();

      const canary = plan.strategy === 'canary' && plan.kind === 'deploy' && !reused;
      if (canary && rt.current) {
        const steps = plan.steps ?? svc.canary.steps;
        move('shifting', `canary rollout of ${plan.release.id}: ${steps.map(describeStep).join(' → ')}`);
        await this.#rollOut(rt, group, steps, say);
        say('info', `canary complete: switching all traffic to ${plan.release.id}`);
      } else {
        if (canary) say('info', `${rt.name} has no serving release to compare with: switching at once`);
        move('shifting', `switching traffic to ${plan.release.id}`);
      }
      checkpoint();

      const run = rt.canary;
      const drain = rt.switchTo(group, seq, { stopPrevious: plan.kind === 'restart' });
      switchAt = Date.now();
      run?.applied();
      say('info', `traffic switched to ${plan.release.id}`, { durationMs: switchAt - stepStarted, milestone: 'switched' });
      if (warmWas?.drain) say('info', `the drain of ${plan.release.id} (deployment #${warmWas.drain.deploymentId}) is called off: its instances serve again`);
      // From here on the service is free: a rollback to the old instances, still draining, is instant.
      rt.release(seq);
      hooks.switched?.(this.#outcome(rt, { id, seq }, plan, fromRelease, 'switched', started, switchAt, before, null));
      if (svc.hooks.afterSwitch && plan.kind !== 'restart') {
        // Traffic has moved: a failure here is reported, not undone (rollback is one command away).
        await runServiceHook('after_switch', svc.hooks.afterSwitch, { ...hookCtx, signal: undefined }, report).catch((err: unknown) => {
          const e = isBatonError(err) ? err : new BatonError('HOOK_FAILED', errorMessage(err));
          say('warn', `${e.message}; traffic stays on ${plan.release.id} (roll back with \`baton rollback ${rt.name}\`)`, { details: e.details });
        });
      }

      move('draining', drain ? `draining ${drain.group.instances.size} old instance(s) of ${drain.group.release} (up to ${formatDuration(svc.drainTimeoutMs)})` : 'nothing to drain');
      if (drain) {
        const d = await drain.done;
        const extra = [
          d.abandonedRequests ? `${d.abandonedRequests} request(s) still running at the drain deadline` : '',
          d.closedWebSockets ? `${d.closedWebSockets} WebSocket(s) closed with 1001 at the drain deadline` : '',
        ].filter(Boolean);
        if (d.takenOverBy !== null) {
          say('info', `drain cut short: deployment #${d.takenOverBy} routed to the instances of ${drain.group.release} again`, { durationMs: Date.now() - stepStarted });
        } else {
          say(d.abandonedRequests ? 'warn' : 'info', `old instances drained${extra.length ? `: ${extra.join('; ')}` : ''}`, { durationMs: Date.now() - stepStarted });
          if (d.after === 'standby') say('info', `release ${drain.group.release} kept running as warm standby for ${formatDuration(svc.standbyMs)} (instant rollback)`);
          else if (d.after === 'stopped') say('info', `old instances of ${drain.group.release} stopped`);
          else say('info', `old instances of ${drain.group.release} kept running: a deployment is switching back to them`);
        }
      }

      move('done', `${plan.kind} of ${rt.name} to ${plan.release.id} done`);
      // The standby this deploy replaced is stopping: its release is prunable once it has stopped.
      await rt.replacedStandbysStopped();
      await this.#prune(rt).catch((err) => log.warn('pruning releases failed', { error: errorMessage(err) }));
      return this.#finish(rt, { id, seq }, plan, fromRelease, 'done', started, switchAt, before, null);
    } catch (err) {
      // A cancel that killed a hook or ended a wait is reported as the cancel it is.
      const why = cancelled.aborted && switchAt === null ? (cancelled.reason as unknown) : err;
      const e = isBatonError(why) ? why : new BatonError('DEPLOY_FAILED', errorMessage(why));
      let outcome: 'failed' | 'rolled_back' | 'done' = 'failed';
      if (!isTerminal(state) && switchAt === null) {
        move('aborting', `${plan.kind} ${e.code === 'DEPLOY_CANCELLED' ? 'cancelled' : 'failed'}: ${e.message}`);
        const run = rt.canary;
        if (group && run?.group === group) {
          // The canary had visitors: send them all back to the stable release at once, then drain it.
          rt.endCanary();
          run.applied();
          say('info', `all traffic back on ${fromRelease}; draining the canary`);
          await rt.retire(group, true).catch((stopErr) => log.error('stopping the canary failed', { error: errorMessage(stopErr) }));
          outcome = 'rolled_back';
        } else if (group && reused) {
          rt.unclaim(group);
          say('info', `${fromRelease ?? 'nothing'} keeps serving`);
        } else if (group) {
          await rt.retire(group, false).catch((stopErr) => log.error('stopping the new instances failed', { error: errorMessage(stopErr) }));
          say('info', `new instances stopped; ${fromRelease ?? 'nothing'} keeps serving`);
        }
        state = outcome;
        store.updateDeployment(id, { state: outcome });
      } else if (!isTerminal(state)) {
        // After the switch nothing is undone (the new release serves): the deployment still ends.
        log.error('deployment failed after the switch', { error: e.message });
        outcome = 'done';
      }
      say('error', e.message, { details: e.details });
      // A failed deploy's release counts against keep_releases like any other.
      await this.#prune(rt).catch((pruneErr: unknown) => log.warn('pruning releases failed', { error: errorMessage(pruneErr) }));
      return this.#finish(rt, { id, seq }, plan, fromRelease, outcome, started, switchAt, before, e);
    } finally {
      rt.release(seq);
    }
  }

  /**
   * Run the canary plan: weights, pauses, analyses, with the operator's
   * promote/abort signals. Returns when the canary may take all the traffic;
   * throws (CANARY_ABORTED) when it must be rolled back.
   */
  async #rollOut(rt: ServiceRuntime, group: ReleaseGroup, steps: readonly CanaryStep[], say: (type: DeployEvent['type'], message: string, extra?: Partial<DeployEvent>) => void): Promise<void> {
    const svc = rt.config;
    const run = new CanaryRun(group, steps);
    rt.startCanary(run);
    const abort = (why: string, details: string[] = []): never => {
      throw new BatonError('CANARY_ABORTED', `canary of ${group.release} aborted: ${why}`, details);
    };
    const handle = (signal: CanarySignal | 'timeout' | null): 'next' | 'full' | 'stay' => {
      if (signal === 'abort') abort(run.abortReason ?? 'aborted by the operator');
      if (signal === 'promote_full') return 'full';
      if (signal === 'promote') return 'next';
      return signal === 'timeout' ? 'next' : 'stay';
    };
    for (let i = 0; i < run.steps.length; i++) {
      run.step = i;
      const step = run.steps[i]!;
      if (handle(run.takePending()) === 'full') break;
      if (step.kind === 'weight') {
        run.weight = step.weight;
        rt.canaryWeightChanged();
        run.applied();
        say('info', `step ${i + 1}/${run.steps.length}: ${step.weight}% of visitors on ${group.release}`);
        continue;
      }
      if (step.kind === 'pause' || step.kind === 'pause_until_promoted') {
        const ms = step.kind === 'pause' ? step.ms : Infinity;
        say('info', `step ${i + 1}/${run.steps.length}: ${describeStep(step)}${ms === Infinity ? ` (\`baton promote ${rt.name}\` to continue, \`baton abort ${rt.name}\` to roll back)` : ''}`);
        if (handle(await run.wait(ms, ms === Infinity ? 'promote' : 'pause')) === 'full') break;
        continue;
      }
      // Analysis: compare canary and stable over the window, from the proxy's own figures.
      say('info', `step ${i + 1}/${run.steps.length}: analysis over ${formatDuration(step.windowMs)} at ${run.weight}%`);
      const stableRelease = rt.current?.release ?? '';
      const sample = (): Map<string, ReleaseMetrics> => new Map(this.#d.proxy.releaseMetrics(rt.name).map((m) => [m.release, m]));
      const start = sample();
      let verdict: Verdict | null = null;
      let skip: 'next' | 'full' | null = null;
      for (let round = 1; round <= 3 && skip === null; round++) {
        const signal = await run.wait(step.windowMs, 'analysis');
        if (signal !== 'timeout') {
          skip = handle(signal) === 'full' ? 'full' : 'next';
          break;
        }
        const end = sample();
        verdict = judge(windowFigures(start.get(group.release), end.get(group.release)), windowFigures(start.get(stableRelease), end.get(stableRelease)), svc.canary.analysis);
        if (verdict.result !== 'inconclusive') break;
        say('info', `${verdict.reasons[0]}; watching another ${formatDuration(step.windowMs)}`);
      }
      if (skip === 'full') break;
      if (skip === 'next') {
        say('info', 'analysis skipped: promoted by the operator');
        continue;
      }
      if (verdict?.result === 'fail') abort('analysis failed', verdict.reasons);
      if (verdict?.result === 'pass' && svc.canary.analysis.check) {
        try {
          await runServiceHook('check', svc.canary.analysis.check, { stateDir: this.#d.stateDir, service: svc, deploymentId: rt.activeDeployment ?? 0, release: { id: group.release, dir: group.dir }, previousRelease: stableRelease }, {
            info: (m) => say('info', m),
            warn: (m, d) => say('warn', m, d ? { details: d } : {}),
            output: (l) => say('output', l),
          });
        } catch (err) {
          abort('the check hook failed', isBatonError(err) ? [err.message, ...err.details] : [errorMessage(err)]);
        }
      }
      if (verdict?.result === 'pass') {
        say('info', `analysis passed`, { details: verdict.reasons });
      } else if (verdict?.result === 'inconclusive') {
        say('warn', `analysis inconclusive: ${verdict.reasons[0]}; paused (\`baton promote ${rt.name}\` to continue, \`baton abort ${rt.name}\` to roll back)`);
        if (handle(await run.wait(Infinity, 'promote')) === 'full') break;
      }
    }
    run.weight = 100;
  }

  /** Shared files, build (once per release), migration (once per deploy): before any instance starts. */
  async #prepare(rt: ServiceRuntime, plan: DeployPlan, ctx: HookContext, report: StepReporter): Promise<void> {
    const svc = rt.config;
    const { store } = this.#d;
    const linked = await linkShared(this.#d.stateDir, svc, plan.release.dir);
    if (linked) report.info(`${linked} shared path(s) linked into the release`);
    if (svc.runAs) await shareReleaseWith(plan.release.dir, svc.runAs);
    const build = svc.hooks.build;
    if (build) {
      const rel = store.getRelease(rt.name, plan.release.id);
      if (rel?.buildStatus === 'ok') {
        report.info(`release ${plan.release.id} already built${rel.buildMs !== null ? ` (in ${formatDuration(rel.buildMs)})` : ''}: not building again`);
      } else {
        try {
          const ms = await runServiceHook('build', build, ctx, report);
          store.setReleaseBuild(rt.name, plan.release.id, 'ok', ms, Date.now());
        } catch (err) {
          // A half-built tree must never be started later: a git release is exported
          // afresh by its next deploy; a copied directory is dropped (each deploy copies anew).
          await rm(plan.release.dir, { recursive: true, force: true });
          if (rel?.kind === 'git') store.setReleaseBuild(rt.name, plan.release.id, 'failed', null, Date.now());
          else store.deleteRelease(rt.name, plan.release.id);
          throw err;
        }
      }
    }
    if (svc.hooks.migrate && plan.kind === 'deploy') {
      if (plan.skipMigrate) report.info('migrate hook skipped: the fleet rollout ran it once on another host');
      else await runMigration(svc.hooks.migrate, ctx, report);
    }
  }

  #finish(
    rt: ServiceRuntime,
    key: DeploymentKey,
    plan: DeployPlan,
    fromRelease: string | null,
    state: 'done' | 'failed' | 'rolled_back',
    started: number,
    switchAt: number | null,
    before: { requests: number; failed: number; appErrors: number; retries: number },
    err: BatonError | null,
  ): DeployOutcome {
    const o = this.#outcome(rt, key, plan, fromRelease, state, started, switchAt, before, err);
    this.#d.store.updateDeployment(key.id, { state, finishedAt: started + o.durationMs, requests: o.requests, failed: o.failed, error: err ? err.message : null });
    return o;
  }

  #outcome(
    rt: ServiceRuntime,
    { id, seq }: DeploymentKey,
    plan: DeployPlan,
    fromRelease: string | null,
    state: DeployOutcome['state'],
    started: number,
    switchAt: number | null,
    before: { requests: number; failed: number; appErrors: number; retries: number },
    err: BatonError | null,
  ): DeployOutcome {
    const after = this.#d.proxy.counters(rt.name);
    const requests = after.requests - before.requests;
    const failed = after.failed - before.failed;
    const now = Date.now();
    return {
      deploymentId: id,
      seq,
      service: rt.name,
      kind: plan.kind,
      fromRelease,
      toRelease: plan.release.id,
      state,
      durationMs: now - started,
      switchAfterMs: switchAt === null ? null : switchAt - started,
      requests,
      failed,
      appErrors: after.appErrors - before.appErrors,
      retries: after.retries - before.retries,
      error: err ? { code: err.code, message: err.message, details: err.details } : null,
    };
  }

  /** Delete releases beyond keepReleases, never one that is running or is the rollback target. */
  async #prune(rt: ServiceRuntime): Promise<void> {
    const { store } = this.#d;
    const svc = store.getService(rt.name);
    const inUse = [...rt.groups].map((g) => g.release);
    const victims = releasesToPrune(store.listReleases(rt.name), rt.config.keepReleases, [
      svc?.currentRelease ?? null,
      svc?.standbyRelease ?? null,
      ...inUse,
    ]);
    for (const r of victims) {
      store.deleteRelease(rt.name, r.id);
      await rm(r.dir, { recursive: true, force: true });
      this.#d.logger.info('release pruned', { service: rt.name, release: r.id });
    }
    // Logs of stopped instances beyond the newest few (the failed deploy's crashed ones stay readable).
    const live = new Set([...rt.groups].flatMap((g) => g.list().map((i) => i.id)));
    const dropped = await pruneStoppedLogs(path.join(this.#d.stateDir, 'logs', rt.name), live);
    if (dropped.length) this.#d.logger.info('logs of stopped instances pruned', { service: rt.name, instances: dropped.length });
    // Directories no record names (a copy or export cut short by a crash) are never used again.
    const known = new Set(store.listReleases(rt.name).map((r) => path.basename(r.dir)));
    for (const name of await strayReleaseDirs(releasesDir(this.#d.stateDir, rt.name), known)) {
      await rm(path.join(releasesDir(this.#d.stateDir, rt.name), name), { recursive: true, force: true });
      this.#d.logger.info('stray release directory removed', { service: rt.name, dir: name });
    }
  }
}
