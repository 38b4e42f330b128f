// `baton fleet …`: many hosts over OpenSSH (src/fleet). deploy, resume and
// abort a rollout; status of every host; drain and undrain a host in the
// balancer in front.

import { BatonError, errorMessage } from '../../core/errors.ts';
import { parseDuration } from '../../config/duration.ts';
import { formatDuration } from '../../core/time.ts';
import { artifactFromDir, artifactFromGit, discardArtifact, type Artifact } from '../../fleet/artifact.ts';
import { Balancer } from '../../fleet/balancer.ts';
import { DEFAULT_FLEET_FILE, hostsOf, loadFleetConfig, type FleetConfig, type RolloutPolicy } from '../../fleet/config.ts';
import { describePlan } from '../../fleet/plan.ts';
import { RemoteHost } from '../../fleet/remote.ts';
import { newRollout, preflight, Rollout, type FleetEvent } from '../../fleet/rollout.ts';
import { SshHost, defaultControlDir } from '../../fleet/ssh.ts';
import { allWithLimit } from '../../fleet/limit.ts';
import { isFinished, readRollout, stateFile, type RolloutRecord } from '../../fleet/state.ts';
import { table } from '../output.ts';
import type { CliContext } from '../context.ts';

const USAGE = [
  'usage: baton fleet deploy SERVICE [DIR | --ref REF] [--batch N|N%] [--canary N] [--bake 30s] [--drain] [--no-revert]',
  '       baton fleet resume SERVICE | abort SERVICE',
  '       baton fleet status [SERVICE] [--json]',
  '       baton fleet drain HOST [--maint] | undrain HOST [--weight N%]',
  '  (--fleet FILE: the fleet file, default ./fleet.yaml)',
].join('\n');

/** The fleet's hosts with their ssh connections, closed whatever happens. */
class Session {
  readonly cfg: FleetConfig;
  readonly ssh = new Map<string, SshHost>();
  readonly controlDir = defaultControlDir();
  /** The rollout under way: Ctrl-C pauses it instead of ending the session. */
  rollout: Rollout | null = null;
  interrupted = false;

  constructor(cfg: FleetConfig) {
    this.cfg = cfg;
  }

  sshFor(name: string, destination: string): SshHost {
    let s = this.ssh.get(destination);
    if (!s) {
      s = new SshHost(name, destination, { ...this.cfg.ssh, controlDir: this.controlDir });
      this.ssh.set(destination, s);
    }
    return s;
  }

  readonly #remotes = new Map<string, RemoteHost>();

  remote(name: string): RemoteHost {
    const known = this.#remotes.get(name);
    if (known) return known;
    const h = this.cfg.hosts.find((x) => x.name === name);
    if (!h) throw new BatonError('USAGE', `no host "${name}" in ${this.cfg.file} (hosts: ${this.cfg.hosts.map((x) => x.name).join(', ')})`);
    const r = new RemoteHost(h, this.sshFor(h.name, h.destination));
    this.#remotes.set(name, r);
    return r;
  }

  balancer(): Balancer | null {
    const b = this.cfg.balancer;
    if (b.type === 'none') return null;
    const lb = (b.type === 'haproxy' || b.type === 'baton') && b.host ? this.sshFor(b.host, this.cfg.hosts.find((h) => h.name === b.host)?.destination ?? b.host) : null;
    return new Balancer(b, lb, this.controlDir);
  }

  close(): void {
    for (const s of this.ssh.values()) s.close();
  }
}

async function withSession<T>(ctx: CliContext, f: (s: Session) => Promise<T>): Promise<T> {
  const file = typeof ctx.flags['fleet'] === 'string' ? ctx.flags['fleet'] : DEFAULT_FLEET_FILE;
  const s = new Session(await loadFleetConfig(file));
  // The ssh processes are in their own process groups (a rollout must outlive a
  // Ctrl-C until its step is done), so the terminal's signal never reaches them:
  // outside a rollout, Ctrl-C ends them here, and what waited on them fails.
  const interrupted = (): void => {
    if (s.rollout) {
      s.rollout.requestPause();
      if (!ctx.json) ctx.out('\n  interrupted: pausing once the hosts in progress have finished their step …\n');
    } else {
      s.interrupted = true;
      s.close();
    }
  };
  process.on('SIGINT', interrupted);
  process.on('SIGTERM', interrupted);
  try {
    return await f(s);
  } catch (err) {
    if (s.interrupted) throw new BatonError('FLEET_ROLLOUT_FAILED', `interrupted (${errorMessage(err)})`);
    throw err;
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    s.close();
  }
}

export const fleetDeployCommand = (ctx: CliContext): Promise<number> => withSession(ctx, (s) => deploy(ctx, s));
export const fleetResumeCommand = (ctx: CliContext): Promise<number> => withSession(ctx, (s) => resume(ctx, s));
export const fleetAbortCommand = (ctx: CliContext): Promise<number> => withSession(ctx, (s) => abort(ctx, s));
export const fleetStatusCommand = (ctx: CliContext): Promise<number> => withSession(ctx, (s) => status(ctx, s));
export const fleetUnlockCommand = (ctx: CliContext): Promise<number> => withSession(ctx, (s) => unlock(ctx, s));
export const fleetDrainCommand = (ctx: CliContext): Promise<number> => withSession(ctx, (s) => drain(ctx, s, 'drain'));
export const fleetUndrainCommand = (ctx: CliContext): Promise<number> => withSession(ctx, (s) => drain(ctx, s, 'undrain'));

function policyFrom(ctx: CliContext, cfg: FleetConfig): RolloutPolicy {
  const p = { ...cfg.rollout };
  const batch = ctx.flags['batch'];
  if (typeof batch === 'string') {
    const m = /^(\d+)(%?)$/.exec(batch);
    if (!m || Number(m[1]) < 1 || (m[2] && Number(m[1]) > 100)) throw new BatonError('USAGE', `--batch must be a number of hosts or a share like 25%, got "${batch}"`);
    p.batch = m[2] ? { percent: Number(m[1]) } : { hosts: Number(m[1]) };
  }
  const canary = ctx.flags['canary'];
  if (typeof canary === 'string') {
    if (!/^\d+$/.test(canary)) throw new BatonError('USAGE', `--canary must be a number of hosts, got "${canary}"`);
    p.canary = Number(canary);
  }
  const bake = ctx.flags['bake'];
  if (typeof bake === 'string') {
    const ms = parseDuration(bake);
    if (ms === undefined) throw new BatonError('USAGE', `--bake must be a duration like 30s, got "${bake}"`);
    p.bakeMs = ms;
  }
  if (ctx.flags['drain'] === true) {
    if (cfg.balancer.type === 'none') throw new BatonError('USAGE', `--drain needs a balancer in ${cfg.file} (balancer.type)`);
    p.drain = true;
  }
  if (ctx.flags['no-revert'] === true) p.revert = false;
  return p;
}

/** Progress: one line per host state, with the time since the start; or JSON events. */
function printer(ctx: CliContext): (e: FleetEvent) => void {
  return (e) => {
    if (ctx.json) {
      ctx.out(JSON.stringify(e) + '\n');
      return;
    }
    if (e.type === 'host') ctx.out(`  ${`+${formatDuration(e.sinceStartMs)}`.padEnd(8)} ${e.host.padEnd(12)} ${e.phase.padEnd(10)}${e.message ? ` ${e.message}` : ''}\n`);
    else if (e.type === 'phase') ctx.out(`  ${e.phase}: ${formatDuration(e.ms)}\n`);
    else if (e.type === 'info') ctx.out(`  ${e.message}\n`);
    else if (e.type === 'plan') {
      ctx.out(`rollout ${e.rollout}: ${e.service} ← ${e.artifact.name} (${e.artifact.bytes} bytes, sha256 ${e.artifact.sha256.slice(0, 12)}) from ${e.artifact.source}\n`);
      ctx.out(describePlan(e.batches).join('\n') + '\n');
    }
  };
}

function report(ctx: CliContext, rec: RolloutRecord): void {
  if (ctx.json) {
    ctx.out(JSON.stringify({ type: 'result', rollout: rec }) + '\n');
    return;
  }
  const rows = [['HOST', 'RESULT', 'RELEASE', 'FIRST CHANGE', 'TOOK', 'WHY']];
  for (const [name, h] of Object.entries(rec.hosts)) {
    const moved = h.history.filter((x) => x.phase !== 'queued');
    const start = moved[0]?.at ?? null;
    const end = h.history[h.history.length - 1]?.at ?? null;
    rows.push([
      name,
      h.phase,
      h.phase === 'reverted' ? `back on ${h.to ?? '?'}` : h.to ?? h.from ?? '-',
      start ? new Date(start).toISOString().slice(11, 23) : '-',
      start && end ? formatDuration(end - start) : '-',
      h.error ?? '',
    ]);
  }
  ctx.out(`\n${table(rows)}\n`);
  const phases = Object.entries(rec.phases).map(([k, v]) => `${k} ${formatDuration(v)}`).join(', ');
  ctx.out(`rollout ${rec.id} ${rec.status}${rec.error ? `: ${rec.error}` : ''}\n${phases ? `phases: ${phases}\n` : ''}${rec.revertMs !== null ? `revert of the switched hosts took ${formatDuration(rec.revertMs)}\n` : ''}`);
}

function exitCode(rec: RolloutRecord): number {
  if (rec.status === 'done') return 0;
  // Paused by Ctrl-C: 130; paused by an inconclusive canary analysis (rec.error says why): 1.
  if (rec.status === 'paused' && rec.error === null) return 130;
  return 1;
}

/** Ctrl-C pauses the rollout: the hosts in progress finish their step (see withSession). */
function onInterrupt(s: Session, r: Rollout): () => void {
  s.rollout = r;
  return () => {
    s.rollout = null;
  };
}

async function lockFleet(s: Session, rec: RolloutRecord): Promise<RemoteHost> {
  const lockHost = s.remote(s.cfg.hosts[0]!.name);
  await lockHost.ssh.connect();
  const got = await lockHost.lock(s.cfg.lockPath, { rollout: rec.id, operator: rec.operator, since: Date.now() });
  if (!got.held) {
    const by = typeof got.by === 'string' ? got.by : `${got.by.operator} (rollout ${got.by.rollout}, since ${new Date(got.by.since).toISOString()})`;
    throw new BatonError('FLEET_LOCKED', `the fleet ${s.cfg.name} is locked by ${by}; lock ${s.cfg.lockPath} on ${lockHost.name}`);
  }
  return lockHost;
}

async function deploy(ctx: CliContext, s: Session): Promise<number> {
  const [service, dir, extra] = ctx.args;
  const ref = ctx.flags['ref'];
  if (!service || extra !== undefined || (dir !== undefined && typeof ref === 'string') || (dir === undefined && typeof ref !== 'string')) throw new BatonError('USAGE', USAGE);
  const policy = policyFrom(ctx, s.cfg);
  const hosts = hostsOf(s.cfg, service).map((h) => s.remote(h.name));
  if (hosts.length === 0) throw new BatonError('USAGE', `no host of ${s.cfg.file} runs ${service}`);
  const prev = readRollout(s.cfg.name, service);
  if (prev && !isFinished(prev.status)) {
    throw new BatonError('DEPLOY_IN_PROGRESS', `a rollout of ${service} is ${prev.status} (${prev.id}, by ${prev.operator}): \`baton fleet resume ${service}\` or \`baton fleet abort ${service}\` (${stateFile(s.cfg.name, service)})`);
  }
  const emit = printer(ctx);
  const t0 = Date.now();
  let artifact: Artifact;
  if (dir !== undefined) artifact = await artifactFromDir(dir, service);
  else artifact = await artifactFromGit(s.cfg.services[service]?.repo ?? process.cwd(), ref as string, service);
  const packMs = Date.now() - t0;
  try {
    const rec = newRollout(s.cfg, service, hosts, artifact, policy);
    rec.phases['pack'] = packMs;
    emit({ type: 'plan', rollout: rec.id, service, artifact: rec.artifact, batches: rec.batches });
    const tp = Date.now();
    const pre = await preflight(hosts, service, artifact.bytes, s.cfg.ssh.maxParallel);
    rec.phases['preflight'] = Date.now() - tp;
    emit({ type: 'phase', phase: 'preflight', ms: rec.phases['preflight'], message: pre.map((p) => `${p.host} baton ${p.version} on ${p.currentRelease ?? '(none)'}`).join(', ') });
    const lockHost = await lockFleet(s, rec);
    const r = new Rollout(rec, hosts, s.balancer(), emit);
    const off = onInterrupt(s, r);
    try {
      await r.save();
      await r.ship(artifact, s.cfg.ssh.maxParallel);
      const status = await r.run();
      report(ctx, r.rec);
      if (status !== 'paused') await lockHost.unlock(s.cfg.lockPath, rec.id).catch(() => {});
      return exitCode(r.rec);
    } catch (err) {
      // Something the rollout could not even judge (a lost connection while shipping): what was switched goes back.
      r.rec.error = errorMessage(err);
      if (Object.values(r.rec.hosts).some((h) => h.phase === 'switched' || h.phase === 'baking' || h.phase === 'done') && r.rec.options.revert) await r.revert();
      else r.rec.status = 'failed';
      await r.save();
      report(ctx, r.rec);
      await lockHost.unlock(s.cfg.lockPath, rec.id).catch(() => {});
      throw err;
    } finally {
      off();
    }
  } finally {
    await discardArtifact(artifact);
  }
}

function needRollout(s: Session, ctx: CliContext, verb: string): RolloutRecord {
  const [service, extra] = ctx.args;
  if (!service || extra !== undefined) throw new BatonError('USAGE', `usage: baton fleet ${verb} SERVICE`);
  const rec = readRollout(s.cfg.name, service);
  if (!rec) throw new BatonError('FLEET_NO_ROLLOUT', `no rollout of ${service} is recorded for the fleet ${s.cfg.name} (${stateFile(s.cfg.name, service)})`);
  return rec;
}

/** Hosts the record left mid-step (a CLI that died): ask each where it stands. */
async function settleInProgress(rec: RolloutRecord, hosts: RemoteHost[]): Promise<void> {
  for (const h of hosts) {
    const hr = rec.hosts[h.name];
    if (!hr || !['draining', 'building', 'starting', 'switching', 'shipping', 'reverting'].includes(hr.phase)) continue;
    const st = await h.status();
    const svc = st.services.find((x) => x.name === rec.service);
    const on = svc?.currentRelease ?? null;
    if (on !== null && on.includes(rec.artifact.name)) {
      hr.phase = 'switched';
      hr.to = on;
      hr.from = svc?.standbyRelease ?? hr.from;
    } else {
      hr.phase = hr.phase === 'shipping' ? 'queued' : 'shipped';
    }
    hr.history.push({ phase: hr.phase, at: Date.now() });
  }
}

async function resume(ctx: CliContext, s: Session): Promise<number> {
  const rec = needRollout(s, ctx, 'resume');
  if (rec.status !== 'paused' && rec.status !== 'running') throw new BatonError('FLEET_NO_ROLLOUT', `the rollout ${rec.id} of ${rec.service} is ${rec.status}: nothing to resume`);
  const hosts = Object.keys(rec.hosts).map((n) => s.remote(n));
  await preflight(hosts, rec.service, 0, s.cfg.ssh.maxParallel);
  const lockHost = await lockFleet(s, rec);
  await settleInProgress(rec, hosts);
  const emit = printer(ctx);
  const r = new Rollout(rec, hosts, s.balancer(), emit);
  const off = onInterrupt(s, r);
  try {
    if (!ctx.json) ctx.out(`resuming rollout ${rec.id} of ${rec.service} (${rec.artifact.name})\n`);
    // Hosts not shipped to before the pause: the artifact must still be on the first host that has it.
    const notShipped = Object.entries(rec.hosts).filter(([, h]) => h.phase === 'queued').map(([n]) => n);
    if (notShipped.length) throw new BatonError('FLEET_ROLLOUT_FAILED', `the artifact never reached ${notShipped.join(', ')}: abort and deploy again`);
    const status = await r.run();
    report(ctx, r.rec);
    if (status !== 'paused') await lockHost.unlock(s.cfg.lockPath, rec.id).catch(() => {});
    return exitCode(r.rec);
  } finally {
    off();
  }
}

async function abort(ctx: CliContext, s: Session): Promise<number> {
  const rec = needRollout(s, ctx, 'abort');
  if (rec.status !== 'paused' && rec.status !== 'running' && rec.status !== 'failed') throw new BatonError('FLEET_NO_ROLLOUT', `the rollout ${rec.id} of ${rec.service} is ${rec.status}: nothing to abort`);
  const hosts = Object.keys(rec.hosts).map((n) => s.remote(n));
  await allWithLimit(hosts, s.cfg.ssh.maxParallel, (h) => h.open());
  const lockHost = await lockFleet(s, rec);
  await settleInProgress(rec, hosts);
  const r = new Rollout(rec, hosts, s.balancer(), printer(ctx));
  rec.error = rec.error ?? 'aborted by the operator';
  for (const [name, h] of Object.entries(rec.hosts)) if (h.phase === 'queued' || h.phase === 'shipped') {
    h.phase = 'untouched';
    h.history.push({ phase: 'untouched', at: Date.now() });
    void name;
  }
  await r.revert();
  if (r.rec.status === 'reverted') r.rec.status = 'aborted';
  await r.save();
  report(ctx, r.rec);
  await lockHost.unlock(s.cfg.lockPath, rec.id).catch(() => {});
  return r.rec.status === 'aborted' ? 0 : 1;
}

/** A lock left by a CLI that died: shown, and removed only with --force. */
async function unlock(ctx: CliContext, s: Session): Promise<number> {
  if (ctx.args.length > 0) throw new BatonError('USAGE', 'usage: baton fleet unlock [--force]');
  const lockHost = s.remote(s.cfg.hosts[0]!.name);
  await lockHost.ssh.connect();
  const holder = await lockHost.lockHolder(s.cfg.lockPath);
  const who = holder === null ? null : typeof holder === 'string' ? holder : `${holder.operator} (rollout ${holder.rollout}, since ${new Date(holder.since).toISOString()})`;
  const force = ctx.flags['force'] === true;
  if (holder !== null && force) await lockHost.breakLock(s.cfg.lockPath);
  if (ctx.json) ctx.out(JSON.stringify({ lock: s.cfg.lockPath, host: lockHost.name, holder, removed: holder !== null && force }) + '\n');
  else if (holder === null) ctx.out(`the fleet ${s.cfg.name} is not locked\n`);
  else if (force) ctx.out(`removed the lock of ${who} (${s.cfg.lockPath} on ${lockHost.name})\n`);
  else ctx.out(`the fleet ${s.cfg.name} is locked by ${who}; if that rollout is gone, \`baton fleet unlock --force\` removes the lock\n`);
  return holder !== null && !force ? 1 : 0;
}

interface HostRow {
  host: string;
  reachable: boolean;
  error: string | null;
  version: string | null;
  drain: string | null;
  services: { name: string; current: string | null; standby: string | null; standbyWarm: boolean; healthy: number; instances: number; deploying: number | null }[];
}

async function status(ctx: CliContext, s: Session): Promise<number> {
  const [service] = ctx.args;
  const hosts = (service ? hostsOf(s.cfg, service) : s.cfg.hosts).map((h) => s.remote(h.name));
  const rows: HostRow[] = await allWithLimit(hosts, s.cfg.ssh.maxParallel, async (h): Promise<HostRow> => {
    try {
      const st = await h.open();
      const d = st.host?.drain;
      return {
        host: h.name,
        reachable: true,
        error: null,
        version: st.daemon.version,
        drain: d ? `${d.mode}${d.weightPercent !== null ? ` ${d.weightPercent}%` : ''}` : 'n/a',
        services: st.services.filter((x) => !service || x.name === service).map((x) => {
          const cur = x.instances.filter((i) => i.role === 'current');
          return { name: x.name, current: x.currentRelease, standby: x.standbyRelease, standbyWarm: x.standbyWarmUntil !== null, healthy: cur.filter((i) => i.healthy).length, instances: cur.length, deploying: x.deploying };
        }),
      };
    } catch (err) {
      return { host: h.name, reachable: false, error: errorMessage(err), version: null, drain: null, services: [] };
    }
  });
  const rollouts = [...new Set(rows.flatMap((r) => r.services.map((x) => x.name)).concat(service ? [service] : []))]
    .map((svc) => readRollout(s.cfg.name, svc))
    .filter((r): r is RolloutRecord => r !== null);
  if (ctx.json) {
    ctx.out(JSON.stringify({ fleet: s.cfg.name, hosts: rows, rollouts: rollouts.map((r) => ({ id: r.id, service: r.service, status: r.status, artifact: r.artifact.name, hosts: Object.fromEntries(Object.entries(r.hosts).map(([n, h]) => [n, h.phase])) })) }, null, 2) + '\n');
    return rows.every((r) => r.reachable) ? 0 : 1;
  }
  const t = [['HOST', 'SERVICE', 'CURRENT', 'STANDBY', 'HEALTH', 'DRAIN', 'BATON', '']];
  for (const r of rows) {
    if (!r.reachable) {
      t.push([r.host, '-', '-', '-', '-', '-', '-', `unreachable: ${r.error}`]);
      continue;
    }
    for (const x of r.services) {
      t.push([r.host, x.name, x.current ?? '-', x.standby ? `${x.standby}${x.standbyWarm ? ' (warm)' : ''}` : '-', `${x.healthy}/${x.instances}${x.deploying !== null ? ` deploying #${x.deploying}` : ''}`, r.drain ?? '-', r.version ?? '-', '']);
    }
  }
  ctx.out(table(t) + '\n');
  for (const r of rollouts) ctx.out(`rollout ${r.id} of ${r.service}: ${r.status} (${r.artifact.name}, by ${r.operator}): ${Object.entries(r.hosts).map(([n, h]) => `${n} ${h.phase}`).join(', ')}\n`);
  return rows.every((r) => r.reachable) ? 0 : 1;
}

async function drain(ctx: CliContext, s: Session, verb: 'drain' | 'undrain'): Promise<number> {
  const [name, extra] = ctx.args;
  if (!name || extra !== undefined) throw new BatonError('USAGE', `usage: baton fleet ${verb} HOST${verb === 'drain' ? ' [--maint]' : ' [--weight N%]'}`);
  const host = s.remote(name);
  const b = s.balancer();
  if (!b) throw new BatonError('USAGE', `${s.cfg.file} names no balancer (balancer.type): nothing to drain ${name} from`);
  await host.open();
  const reason = typeof ctx.flags['reason'] === 'string' ? ctx.flags['reason'] : `baton fleet ${verb} by ${process.env['USER'] ?? 'operator'}`;
  if (verb === 'drain') {
    const ms = await b.drain(host, ctx.flags['maint'] === true ? 'maint' : 'drain', reason);
    if (ctx.json) ctx.out(JSON.stringify({ host: name, mode: ctx.flags['maint'] === true ? 'maint' : 'drain', quietAfterMs: ms }) + '\n');
    else ctx.out(`${name}: out of rotation; no request in flight after ${formatDuration(ms)}\n`);
    return 0;
  }
  const w = ctx.flags['weight'];
  let weight: number | null = null;
  if (typeof w === 'string') {
    weight = Number(w.replace(/%$/, ''));
    if (!Number.isInteger(weight) || weight < 1 || weight > 100) throw new BatonError('USAGE', `--weight must be a percentage from 1 to 100, got "${w}"`);
  }
  await b.undrain(host, weight, reason);
  if (ctx.json) ctx.out(JSON.stringify({ host: name, mode: 'ready', weightPercent: weight }) + '\n');
  else ctx.out(`${name}: back in rotation${weight !== null ? ` at ${weight}% of its weight` : ''}\n`);
  return 0;
}

