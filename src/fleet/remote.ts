// One host of the fleet as the rollout sees it: its own baton daemon, reached
// over the host's one ssh connection, the artifact shipped to it, and the
// fleet lock that may live on it. The host's baton CLI is run once (`baton
// status --json`: is baton there, which version, where is its control
// socket); from then on the daemon's control socket is forwarded over the
// same connection and spoken to directly (deploy and rollback events streamed
// back), so no step pays for a CLI starting on the host: a revert is one
// request per host.

import { createReadStream } from 'node:fs';
import { ControlClient } from '../control/client.ts';
import { BatonError, errorMessage } from '../core/errors.ts';
import type { DeployEvent, DeployOutcome } from '../core/deployment.ts';
import type { HostDrainStatus, StatusResponse, StreamLine } from '../control/protocol.ts';
import { waitQuiet } from '../control/wait-quiet.ts';
import type { Artifact } from './artifact.ts';
import type { FleetHostConfig } from './config.ts';
import { shellQuote, sshMessage, type SshHost } from './ssh.ts';

export interface LockHolder {
  rollout: string;
  operator: string;
  since: number;
}

export class RemoteHost {
  readonly cfg: FleetHostConfig;
  readonly ssh: SshHost;
  #control: ControlClient | null = null;
  /** The artifacts directory as an absolute path on the host (known after preflight). */
  #artifactsAbs: string | null = null;
  actor = 'baton fleet';

  constructor(cfg: FleetHostConfig, ssh: SshHost) {
    this.cfg = cfg;
    this.ssh = ssh;
  }

  get name(): string {
    return this.cfg.name;
  }

  /** The command line of this host's baton with `args` (the host's --config appended). */
  #baton(args: string[]): string {
    const all = [...args, ...(this.cfg.config ? ['--config', this.cfg.config] : [])];
    return `${this.cfg.baton} ${all.map(shellQuote).join(' ')}`;
  }

  async #json<T>(args: string[], what: string): Promise<T> {
    const r = await this.ssh.run(this.#baton([...args, '--json']), { timeoutMs: 15 * 60_000 });
    if (r.code !== 0) {
      throw new BatonError('FLEET_ROLLOUT_FAILED', `${this.name}: \`baton ${args.join(' ')}\` failed (exit ${r.code}): ${errorText(r.stdout, r.stderr)}`);
    }
    try {
      return JSON.parse(r.stdout) as T;
    } catch {
      throw new BatonError('FLEET_ROLLOUT_FAILED', `${this.name}: ${what}: not JSON: ${r.stdout.slice(0, 200)}`);
    }
  }

  async version(): Promise<string> {
    const r = await this.ssh.run(this.#baton(['--version']), { timeoutMs: 30_000 });
    if (r.code !== 0) {
      const missing = r.code === 127 ? ` (is "${this.cfg.baton}" installed there? set hosts.${this.name}.baton)` : '';
      throw new BatonError('FLEET_PREFLIGHT_FAILED', `${this.name}: baton does not run${missing}: ${errorText(r.stdout, r.stderr)}`);
    }
    return r.stdout.trim();
  }

  /**
   * Ask the host's baton CLI for its daemon's status, then forward the
   * daemon's control socket over the ssh connection. Before anything else.
   */
  async open(): Promise<StatusResponse> {
    await this.ssh.connect();
    const st = await this.#json<StatusResponse>(['status'], 'status');
    if (!this.#control) {
      const remote = st.daemon.controlSocket ?? `${st.daemon.stateDir}/baton.sock`;
      const local = this.ssh.localSocket('ctl');
      try {
        await this.ssh.forwardUnixSocket(local, remote);
      } catch (err) {
        throw new BatonError('FLEET_PREFLIGHT_FAILED', `${this.name}: cannot reach the daemon's control socket ${remote} over ssh (is AllowStreamLocalForwarding off in its sshd?): ${errorMessage(err)}`);
      }
      this.#control = new ControlClient(local, `the daemon on ${this.name} does not answer`);
    }
    return st;
  }

  #api(): ControlClient {
    if (!this.#control) throw new BatonError('INTERNAL', `${this.name}: the host was not opened`);
    return this.#control;
  }

  /** The daemon's status, through the forwarded control socket. */
  async status(): Promise<StatusResponse> {
    try {
      return await this.#api().get<StatusResponse>('/status');
    } catch (err) {
      throw new BatonError('FLEET_ROLLOUT_FAILED', `${this.name}: ${errorMessage(err)}${this.ssh.connected ? '' : ' (the ssh connection is gone)'}`);
    }
  }

  /** Free bytes where artifacts are unpacked (the directory is made if missing; its absolute path noted). */
  async freeBytes(): Promise<number> {
    const d = shellQuote(this.cfg.artifacts);
    const r = await this.ssh.run(`mkdir -p ${d} && cd ${d} && pwd -P && df -Pk . | tail -n 1`, { timeoutMs: 30_000 });
    const [abs, df] = r.stdout.trim().split('\n');
    const kb = Number(df?.trim().split(/\s+/)[3]);
    if (r.code !== 0 || !abs || !Number.isFinite(kb)) throw new BatonError('FLEET_PREFLIGHT_FAILED', `${this.name}: cannot check free space in ${this.cfg.artifacts}: ${errorText(r.stdout, r.stderr)}`);
    this.#artifactsAbs = abs;
    return kb * 1024;
  }

  /** The artifact's directory on this host (relative paths: to the login directory, as the host's baton resolves them). */
  artifactDir(a: { name: string }): string {
    return `${this.cfg.artifacts.replace(/\/+$/, '')}/${a.name}`;
  }

  /** Send the artifact unless it is already there; its sha256 is checked on the host before it is unpacked. */
  async ship(a: Artifact): Promise<'shipped' | 'present'> {
    const dir = shellQuote(this.artifactDir(a));
    const have = await this.ssh.run(`cat ${dir}.sha256 2>/dev/null`, { timeoutMs: 30_000 });
    if (have.stdout.trim() === a.sha256) return 'present';
    const script = [
      'set -e',
      `rm -rf ${dir}.partial ${dir}.tar ${dir}.sha256`,
      `mkdir -p ${dir}.partial`,
      `cat > ${dir}.tar`,
      `got=$(sha256sum ${dir}.tar | cut -d' ' -f1)`,
      `if [ "$got" != ${a.sha256} ]; then rm -rf ${dir}.tar ${dir}.partial; echo "checksum mismatch: expected ${a.sha256}, got $got" >&2; exit 3; fi`,
      `tar -xf ${dir}.tar -C ${dir}.partial`,
      `rm -f ${dir}.tar`,
      `rm -rf ${dir}`,
      `mv ${dir}.partial ${dir}`,
      `echo ${a.sha256} > ${dir}.sha256`,
    ].join('\n');
    const r = await this.ssh.run(`sh -c ${shellQuote(script)}`, { stdin: createReadStream(a.file), timeoutMs: 10 * 60_000 });
    if (r.code !== 0) throw new BatonError('FLEET_ROLLOUT_FAILED', `${this.name}: shipping ${a.name} failed: ${errorText(r.stdout, r.stderr)}`);
    return 'shipped';
  }

  /**
   * The host's own zero-downtime deploy of the shipped artifact. Resolves
   * with the host's outcome (done or not); throws only when the host could
   * not be asked or gave no answer.
   */
  deploy(service: string, artifact: { name: string }, opts: { skipMigrate: boolean; timeoutMs: number }, onEvent: (e: DeployEvent) => void): Promise<DeployOutcome> {
    if (!this.#artifactsAbs) throw new BatonError('INTERNAL', `${this.name}: the artifacts directory was not resolved (preflight)`);
    // until 'switched': the answer comes once traffic has moved; the old instances drain on in the daemon
    // (a rollback meanwhile takes them straight back), so the next batch does not wait for them.
    const body = { releaseDir: `${this.#artifactsAbs}/${artifact.name}`, actor: this.actor, until: 'switched', ...(opts.skipMigrate ? { skipMigrate: true } : {}) };
    return this.#stream(`/services/${encodeURIComponent(service)}/deploy`, body, opts.timeoutMs, onEvent);
  }

  rollback(service: string, onEvent: (e: DeployEvent) => void): Promise<DeployOutcome> {
    return this.#stream(`/services/${encodeURIComponent(service)}/rollback`, { actor: this.actor, until: 'switched' }, 120_000, onEvent);
  }

  async #stream(path: string, body: unknown, timeoutMs: number, onEvent: (e: DeployEvent) => void): Promise<DeployOutcome> {
    // Filled by the stream's callback (an object: the compiler cannot see callbacks assign locals).
    const got: { outcome: DeployOutcome | null; error: string | null } = { outcome: null, error: null };
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new BatonError('FLEET_ROLLOUT_FAILED', `no result within ${Math.round(timeoutMs / 1000)} s (rollout.healthy_deadline)`)), timeoutMs);
    });
    try {
      await Promise.race([
        this.#api().stream(path, body, (line: StreamLine) => {
          if (line.type === 'event') onEvent(line.event);
          else if (line.type === 'result') got.outcome = line.outcome;
          else if (line.type === 'error') got.error = `${line.error.code}: ${line.error.message}`;
        }),
        deadline,
      ]);
    } catch (err) {
      throw new BatonError('FLEET_ROLLOUT_FAILED', `${errorMessage(err)}${this.ssh.connected ? '' : ' (the ssh connection is gone)'}`);
    } finally {
      clearTimeout(timer);
    }
    if (got.outcome) return got.outcome;
    throw new BatonError('FLEET_ROLLOUT_FAILED', `the daemon ended the stream without a result${got.error ? `: ${got.error}` : ''}${this.ssh.connected ? '' : ' (the ssh connection is gone)'}`);
  }

  /** Take the host out of rotation; with `wait`, resolve once it has been quiet that long (watched through the forwarded socket). */
  async drain(mode: 'drain' | 'maint', reason: string, wait?: { quietMs: number; timeoutMs: number }): Promise<HostDrainStatus> {
    const s = await this.#api().post<HostDrainStatus>('/drain', { mode, reason });
    if (wait) {
      await waitQuiet(() => this.status(), wait.quietMs, wait.timeoutMs, (busy) =>
        new BatonError('FLEET_ROLLOUT_FAILED', `${this.name}: still busy after ${Math.round(wait.timeoutMs / 1000)} s (${busy} in flight); it stays drained (\`baton fleet undrain ${this.name}\`)`));
    }
    return s;
  }

  undrain(weightPercent: number | null, reason: string): Promise<HostDrainStatus> {
    return this.#api().post<HostDrainStatus>('/drain', { mode: 'ready', weightPercent, reason });
  }

  /** Take the fleet lock (a directory: mkdir is atomic); an existing lock of the same rollout is ours. */
  async lock(path: string, me: LockHolder): Promise<{ held: true } | { held: false; by: LockHolder | string }> {
    const p = shellQuote(path);
    const script = [
      `if mkdir ${p} 2>/dev/null; then printf '%s\\n' ${shellQuote(JSON.stringify(me))} > ${p}/holder; echo acquired; exit 0; fi`,
      `echo held; cat ${p}/holder 2>/dev/null || true`,
    ].join('\n');
    const r = await this.ssh.run(`sh -c ${shellQuote(script)}`, { timeoutMs: 30_000 });
    const [first, ...rest] = r.stdout.trim().split('\n');
    if (first === 'acquired') return { held: true };
    if (first !== 'held') throw new BatonError('FLEET_ROLLOUT_FAILED', `${this.name}: cannot take the fleet lock ${path}: ${errorText(r.stdout, r.stderr)}`);
    const text = rest.join('\n').trim();
    try {
      const by = JSON.parse(text) as LockHolder;
      if (by.rollout === me.rollout) return { held: true };
      return { held: false, by };
    } catch {
      return { held: false, by: text || '(no holder recorded)' };
    }
  }

  /** Who holds the fleet lock (null: nobody). */
  async lockHolder(path: string): Promise<LockHolder | string | null> {
    const p = shellQuote(path);
    const r = await this.ssh.run(`sh -c ${shellQuote(`if [ -d ${p} ]; then echo held; cat ${p}/holder 2>/dev/null || true; else echo free; fi`)}`, { timeoutMs: 30_000 });
    const [first, ...rest] = r.stdout.trim().split('\n');
    if (first === 'free') return null;
    if (first !== 'held') throw new BatonError('FLEET_ROLLOUT_FAILED', `${this.name}: cannot read the fleet lock ${path}: ${errorText(r.stdout, r.stderr)}`);
    try {
      return JSON.parse(rest.join('\n')) as LockHolder;
    } catch {
      return rest.join('\n').trim() || '(no holder recorded)';
    }
  }

  /** Remove the fleet lock whoever holds it (the operator's decision: `baton fleet unlock --force`). */
  async breakLock(path: string): Promise<void> {
    const r = await this.ssh.run(`rm -rf ${shellQuote(path)}`, { timeoutMs: 30_000 });
    if (r.code !== 0) throw new BatonError('FLEET_ROLLOUT_FAILED', `${this.name}: cannot remove the fleet lock ${path}: ${errorText(r.stdout, r.stderr)}`);
  }

  async unlock(path: string, rollout: string): Promise<void> {
    const p = shellQuote(path);
    // Only our own lock is removed.
    await this.ssh.run(`sh -c ${shellQuote(`grep -qF ${shellQuote(`"rollout":"${rollout}"`)} ${p}/holder 2>/dev/null && rm -rf ${p}; true`)}`, { timeoutMs: 30_000 });
  }
}

function errorText(stdout: string, stderr: string): string {
  const s = stderr.trim() ? stderr : stdout;
  return s.trim() ? sshMessage(s) : 'no output';
}
