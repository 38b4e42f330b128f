// The transport: the system OpenSSH client, nothing home-made. One master
// connection per host (ControlMaster, started by us and ended by us), every
// command of the rollout multiplexed over it. BatchMode (no prompt may hang a
// rollout), the operator's own ssh config, agent and known_hosts: host keys are
// verified exactly as the operator's ssh does, and ssh's own message is what
// the operator sees when it refuses.
//
// Every ssh process runs in its own process group, so a Ctrl-C at the
// terminal reaches only the CLI, which decides what to stop.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BatonError } from '../core/errors.ts';

export interface SshSettings {
  configFile: string | null;
  connectTimeoutMs: number;
  options: string[];
  /** Where the control sockets live (short: a Unix socket path has ~107 bytes). */
  controlDir: string;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** One argument quoted for the remote shell (ssh hands the command line to it). */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function defaultControlDir(): string {
  return process.env['BATON_SSH_CONTROL_DIR'] ?? path.join(os.tmpdir(), `baton-ssh-${process.getuid?.() ?? 'u'}`);
}

/** ssh's own words, without the noise of its warnings banner art. */
export function sshMessage(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !/^@+$/.test(l));
  const text = lines.join(' | ');
  return text.length > 2000 ? `…${text.slice(-2000)}` : text || 'no message';
}

export class SshHost {
  readonly name: string;
  readonly destination: string;
  readonly #s: SshSettings;
  readonly #controlPath: string;
  #master: ChildProcess | null = null;
  #masterStderr = '';
  readonly #children = new Set<ChildProcess>();
  readonly #forwarded: string[] = [];
  /** Connections this client opened to the host (the master, plus any fallback). */
  connectionsOpened = 0;

  constructor(name: string, destination: string, settings: SshSettings) {
    this.name = name;
    this.destination = destination;
    this.#s = settings;
    const id = createHash('sha256').update(`${settings.configFile ?? ''}\0${destination}\0${process.pid}`).digest('hex').slice(0, 16);
    this.#controlPath = path.join(settings.controlDir, id);
  }

  #baseArgs(): string[] {
    const a: string[] = [];
    if (this.#s.configFile) a.push('-F', this.#s.configFile);
    a.push('-o', 'BatchMode=yes', '-o', `ConnectTimeout=${Math.max(1, Math.ceil(this.#s.connectTimeoutMs / 1000))}`, '-o', 'ServerAliveInterval=5', '-o', 'ServerAliveCountMax=3');
    for (const o of this.#s.options) a.push('-o', o);
    return a;
  }

  /** Open the master connection; refuses with ssh's own message (unreachable, host key, auth). */
  async connect(): Promise<void> {
    if (this.#master) return;
    if (!existsSync(this.#s.controlDir)) mkdirSync(this.#s.controlDir, { recursive: true, mode: 0o700 });
    const args = [...this.#baseArgs(), '-M', '-N', '-o', `ControlPath=${this.#controlPath}`, '-o', 'ControlPersist=no', this.destination];
    const m = spawn('ssh', args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    this.#master = m;
    this.connectionsOpened++;
    m.stderr!.on('data', (d) => (this.#masterStderr += d));
    let exited = false;
    m.once('exit', () => (exited = true));
    const deadline = Date.now() + this.#s.connectTimeoutMs + 5000;
    // The control socket appears once the connection is authenticated.
    while (!existsSync(this.#controlPath)) {
      if (exited) {
        this.#master = null;
        throw new BatonError('SSH_FAILED', `${this.name}: ssh ${this.destination} failed: ${sshMessage(this.#masterStderr)}`);
      }
      if (Date.now() > deadline) {
        this.close();
        throw new BatonError('SSH_FAILED', `${this.name}: ssh ${this.destination} did not connect within ${Math.round((deadline - Date.now() + this.#s.connectTimeoutMs + 5000) / 1000)} s: ${sshMessage(this.#masterStderr)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  get connected(): boolean {
    return this.#master !== null && this.#master.exitCode === null && existsSync(this.#controlPath);
  }

  /**
   * Run a command on the host over the master.
   * `onStdoutLine` gets each line as it arrives (streamed events).
   */
  run(argv: string[] | string, opts: { stdin?: NodeJS.ReadableStream; onStdoutLine?: (line: string) => void; timeoutMs?: number } = {}): Promise<RunResult> {
    if (!this.connected) {
      return Promise.reject(new BatonError('SSH_FAILED', `${this.name}: the ssh connection to ${this.destination} is gone${this.#masterStderr ? `: ${sshMessage(this.#masterStderr)}` : ''}`));
    }
    // A string is a command line already written for the remote shell; a list is quoted word by word.
    const command = typeof argv === 'string' ? argv : argv.map(shellQuote).join(' ');
    const args = [...this.#baseArgs(), '-o', `ControlPath=${this.#controlPath}`, '-o', 'ControlMaster=no', '-T', this.destination, '--', command];
    return new Promise((resolve, reject) => {
      const c = spawn('ssh', args, { stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], detached: true });
      this.#children.add(c);
      let stdout = '';
      let stderr = '';
      let partial = '';
      c.stdout!.on('data', (d: Buffer) => {
        const s = d.toString('utf8');
        stdout += s;
        if (opts.onStdoutLine) {
          partial += s;
          let i: number;
          while ((i = partial.indexOf('\n')) >= 0) {
            opts.onStdoutLine(partial.slice(0, i));
            partial = partial.slice(i + 1);
          }
        }
      });
      c.stderr!.on('data', (d) => (stderr += d));
      if (opts.stdin) {
        opts.stdin.pipe(c.stdin!);
        c.stdin!.on('error', () => {});
      }
      const timer = opts.timeoutMs
        ? setTimeout(() => {
            try {
              process.kill(-c.pid!, 'SIGKILL');
            } catch {
              // gone
            }
          }, opts.timeoutMs)
        : null;
      c.once('error', (err) => reject(new BatonError('SSH_FAILED', `${this.name}: cannot run ssh: ${err.message}`)));
      c.once('close', (code, signal) => {
        if (timer) clearTimeout(timer);
        this.#children.delete(c);
        if (partial && opts.onStdoutLine) opts.onStdoutLine(partial);
        // 255 is ssh's own failure (the connection), not the remote command's.
        if (code === 255 || signal) {
          reject(new BatonError('SSH_FAILED', `${this.name}: ssh ${this.destination} failed${signal ? ` (${signal}${timer ? ', timed out' : ''})` : ''}: ${sshMessage(stderr || this.#masterStderr)}`));
          return;
        }
        resolve({ code: code ?? 1, stdout, stderr });
      });
    });
  }

  /** A local path for a forwarded socket of this host (in the 0700 control directory). */
  localSocket(tag: string): string {
    return `${this.#controlPath}-${tag}`;
  }

  /** Forward a local Unix socket to one on the host (its daemon's control socket, HAProxy's stats socket) over the master. */
  async forwardUnixSocket(local: string, remote: string): Promise<void> {
    const args = [...this.#baseArgs(), '-o', `ControlPath=${this.#controlPath}`, '-o', 'StreamLocalBindUnlink=yes', '-O', 'forward', '-L', `${local}:${remote}`, this.destination];
    await new Promise<void>((resolve, reject) => {
      const c = spawn('ssh', args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      c.stderr!.on('data', (d) => (err += d));
      c.once('close', (code) => (code === 0 ? (this.#forwarded.push(local), resolve()) : reject(new BatonError('SSH_FAILED', `${this.name}: cannot forward ${remote}: ${sshMessage(err)}`))));
    });
  }

  /** End the master (and with it every session); commands still running are killed. */
  close(): void {
    for (const c of this.#children) {
      try {
        process.kill(-c.pid!, 'SIGTERM');
      } catch {
        // gone
      }
    }
    // ssh leaves the sockets it listened on for forwards behind.
    for (const f of this.#forwarded.splice(0)) rmSync(f, { force: true });
    const m = this.#master;
    this.#master = null;
    if (m && m.exitCode === null) {
      try {
        process.kill(-m.pid!, 'SIGTERM');
      } catch {
        // gone
      }
    }
  }
}
