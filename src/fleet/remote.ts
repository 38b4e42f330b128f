// One host of the fleet as the rollout sees it: its own baton, run over the
// host's ssh connection (`ssh HOST baton … --json`, events streamed back),
// the artifact shipped to it, and the fleet lock that may live on it.

import { createReadStream } from 'node:fs';
import { BatonError } from '../core/errors.ts';
import type { DeployEvent, DeployOutcome } from '../core/deployment.ts';
import type { HostDrainStatus, StatusResponse, StreamLine } from '../control/protocol.ts';
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

  status(): Promise<StatusResponse> {
    return this.#json<StatusResponse>(['status'], 'status');
  }

  /** Free bytes where artifacts are unpacked (the directory is made if missing). */
  async freeBytes(): Promise<number> {
    const d = shellQuote(this.cfg.artifacts);
    const r = await this.ssh.run(`mkdir -p ${d} && df -Pk ${d} | tail -n 1`, { timeoutMs: 30_000 });
    const kb = Number(r.stdout.trim().split(/\s+/)[3]);
    if (r.code !== 0 || !Number.isFinite(kb)) throw new BatonError('FLEET_PREFLIGHT_FAILED', `${this.name}: cannot check free space in ${this.cfg.artifacts}: ${errorText(r.stdout, r.stderr)}`);
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
   * `baton deploy SERVICE DIR` on the host: its own zero-downtime switch.
   * Resolves with the host's outcome (done or not); throws only when the
   * host could not be asked or gave no answer.
   */
  deploy(service: string, dir: string, opts: { skipMigrate: boolean; timeoutMs: number }, onEvent: (e: DeployEvent) => void): Promise<DeployOutcome> {
    return this.#stream(['deploy', service, dir, ...(opts.skipMigrate ? ['--skip-migrate'] : [])], opts.timeoutMs, onEvent);
  }

  rollback(service: string, onEvent: (e: DeployEvent) => void): Promise<DeployOutcome> {
    return this.#stream(['rollback', service], 120_000, onEvent);
  }

  async #stream(args: string[], timeoutMs: number, onEvent: (e: DeployEvent) => void): Promise<DeployOutcome> {
    let outcome: DeployOutcome | null = null;
    let error: string | null = null;
    const r = await this.ssh.run(this.#baton([...args, '--json']), {
      timeoutMs,
      onStdoutLine: (l) => {
        if (!l.startsWith('{')) return;
        let line: StreamLine | { error: { message: string } };
        try {
          line = JSON.parse(l) as StreamLine;
        } catch {
          return;
        }
        if ('type' in line) {
          if (line.type === 'event') onEvent(line.event);
          else if (line.type === 'result') outcome = line.outcome;
          else if (line.type === 'error') error = `${line.error.code}: ${line.error.message}`;
        } else if ('error' in line) {
          error = line.error.message;
        }
      },
    });
    if (outcome) return outcome;
    throw new BatonError('FLEET_ROLLOUT_FAILED', `${this.name}: \`baton ${args.join(' ')}\` ended without a result (exit ${r.code}): ${error ?? errorText('', r.stderr)}`);
  }

  /** Drain the host; with quietMs, return only once it has been quiet that long (watched on the host). */
  drain(mode: 'drain' | 'maint', reason: string, wait?: { quietMs: number; timeoutMs: number }): Promise<HostDrainStatus & { quietAfterMs?: number }> {
    const w = wait ? ['--wait-quiet', `${wait.quietMs}ms`, '--timeout', `${wait.timeoutMs}ms`] : [];
    return this.#json<HostDrainStatus>(['drain', ...(mode === 'maint' ? ['--maint'] : []), '--reason', reason, ...w], 'drain');
  }

  undrain(weightPercent: number | null, reason: string): Promise<HostDrainStatus> {
    return this.#json<HostDrainStatus>(['undrain', ...(weightPercent !== null ? ['--weight', `${weightPercent}%`] : []), '--reason', reason], 'undrain');
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
