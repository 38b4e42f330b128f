// The operator's verbs on one service and their rules: which release a
// rollback goes to, what a restart restarts, when an operation is refused (and
// that a refusal is recorded), promote and abort. Each verb ends in the
// Deployer or the ServiceRuntime, which own the doing.

import { existsSync } from 'node:fs';
import { BatonError, isBatonError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { Store } from '../store/index.ts';
import type { DeploySource } from '../core/deployment.ts';
import { parseSteps } from './canary.ts';
import type { DeployEvent, DeployOutcome, Deployer, DeploymentKind, RunHooks } from './deployer.ts';
import type { AbortResult, ServiceRuntime } from './service-runtime.ts';
import type { ReleaseSources } from './sources.ts';

export interface OperationsDeps {
  store: Store;
  deployer: Deployer;
  sources: ReleaseSources;
  logger: Logger;
}

type Emit = (e: DeployEvent) => void;

export class Operations {
  readonly #d: OperationsDeps;

  constructor(deps: OperationsDeps) {
    this.#d = deps;
  }

  /**
   * Deploy a release from a directory (copied), the service's git repository at
   * a ref, or a pushed commit. The release is resolved first (the service is
   * reserved meanwhile); a release still running unrouted is switched to as a
   * rollback would (see Deployer.run).
   */
  async deploy(rt: ServiceRuntime, source: DeploySource, actor: string, emit: Emit, hooks: RunHooks = {}): Promise<DeployOutcome> {
    const steps = source.steps === undefined ? undefined : parseSteps(source.steps, rt.config.canary.analysis.windowMs);
    const strategy = source.strategy ?? (steps ? 'canary' : rt.config.strategy);
    const what = source.dir ?? (source.push ? `commit ${source.push.commit.slice(0, 12)}` : `ref ${source.ref || rt.config.git?.branch || '?'}`);
    const unreserve = this.#idle(rt, () => rt.reserve(), 'deploy', what, actor);
    try {
      const plan = await this.#d.sources.plan(rt, source);
      return await this.#d.deployer.run(rt, { kind: 'deploy', actor, strategy, skipMigrate: source.skipMigrate === true, ...(steps ? { steps } : {}), ...plan }, emit, hooks);
    } finally {
      unreserve();
    }
  }

  /** Back to the previous release (the store's standby) or a named one: instant when it still runs (warm or draining). */
  async rollback(rt: ServiceRuntime, to: string | undefined, actor: string, emit: Emit, hooks: RunHooks = {}): Promise<DeployOutcome> {
    const { store } = this.#d;
    const svc = store.getService(rt.name);
    const target = to ?? svc?.standbyRelease ?? null;
    if (!target) {
      throw new BatonError('NO_PREVIOUS_RELEASE', `${rt.name} has no previous release to roll back to; see \`baton releases ${rt.name}\``);
    }
    this.#idle(rt, () => rt.assertIdle(), 'rollback', target, actor);
    if (target === svc?.currentRelease) {
      throw new BatonError('BAD_REQUEST', `${target} is already the current release of ${rt.name}`);
    }
    const rel = store.getRelease(rt.name, target);
    if (!rel || rel.service !== rt.name) {
      throw new BatonError('RELEASE_UNKNOWN', `${rt.name} has no release "${target}"; see \`baton releases ${rt.name}\``);
    }
    if (!existsSync(rel.dir)) {
      throw new BatonError('RELEASE_INVALID', `release ${target} is missing on disk (${rel.dir})`);
    }
    return this.#d.deployer.run(rt, { kind: 'rollback', release: { id: rel.id, dir: rel.dir }, actor }, emit, hooks);
  }

  /** New processes of the current release, switched to as a deploy is. */
  async restart(rt: ServiceRuntime, actor: string, emit: Emit, hooks: RunHooks = {}): Promise<DeployOutcome> {
    const current = rt.current;
    this.#idle(rt, () => rt.assertIdle(), 'restart', current?.release ?? '-', actor);
    if (!current) throw new BatonError('RELEASE_UNKNOWN', `${rt.name} has no running release to restart; deploy one first`);
    return this.#d.deployer.run(rt, { kind: 'restart', release: { id: current.release, dir: current.dir }, actor }, emit, hooks);
  }

  /** The canary's next step (or all the way); resolves once that is routed. */
  async promote(rt: ServiceRuntime, full: boolean): Promise<{ release: string; weight: number; step: number; of: number; switched: boolean }> {
    const run = rt.canary;
    if (!run) throw new BatonError('NO_CANARY', `no canary of ${rt.name} is running; start one with \`baton deploy ${rt.name} … --strategy canary\``);
    this.#d.logger.info('canary promoted by the operator', { service: rt.name, full, step: run.step });
    await run.send(full ? 'promote_full' : 'promote');
    const switched = rt.canary !== run;
    return { release: run.group.release, weight: switched ? 100 : run.weight, step: run.step + 1, of: run.steps.length, switched };
  }

  /**
   * Abort what runs: a canary goes back to the stable release, a deploy that has
   * not switched is cancelled (`deployment` guards against aborting another one
   * than the caller saw). Resolves once that is live.
   */
  async abort(rt: ServiceRuntime, reason: string, deployment?: number): Promise<AbortResult> {
    if (deployment !== undefined && rt.activeDeployment !== null && rt.activeDeployment !== deployment) {
      throw new BatonError('NOTHING_RUNNING', `deployment #${deployment} of ${rt.name} is no longer running (#${rt.activeDeployment} is)`);
    }
    const r = await rt.abort(reason);
    this.#d.logger.info('deployment aborted by the operator', { service: rt.name, deployment: r.seq, what: r.what });
    return r;
  }

  /** Run a "may this start now?" check; a refusal is logged and recorded in the service's history. */
  #idle<T>(rt: ServiceRuntime, check: () => T, kind: DeploymentKind, release: string, actor: string): T {
    try {
      return check();
    } catch (err) {
      if (isBatonError(err) && err.code === 'DEPLOY_IN_PROGRESS') throw this.#d.deployer.refused(rt, kind, release, actor, err);
      throw err;
    }
  }
}
