// Telling the balancer in front that a host leaves or rejoins the rotation,
// through what it already speaks, and waiting until it has been heard
// (observed, never assumed):
// - HAProxy agent-check: the host's daemon answers "drain"; HAProxy polls it.
//   Done when the host has had no request in flight and no new request for
//   the quiet time (the host's own counters).
// - HAProxy runtime API: `set server BE/SRV state drain` on the stats socket
//   (reached through the balancer host's ssh connection); done when HAProxy
//   reports the server's current sessions at 0. The host's own drain state is
//   left alone: HAProxy is the one told.
// - Any balancer polling /_baton/health (503 while drained): as agent-check.
// - A front baton (a service with `targets`): `baton target drain SERVICE
//   SERVER` run on its host over ssh; done when the front reports nothing in
//   flight (requests and WebSockets) to that target. The host's own drain
//   state is left alone: the front is the one told.

import net from 'node:net';
import path from 'node:path';
import { BatonError } from '../core/errors.ts';
import type { BalancerConfig } from './config.ts';
import type { RemoteHost } from './remote.ts';
import { shellQuote, type SshHost } from './ssh.ts';
import type { FrontTargetStatus, StatusResponse } from '../control/protocol.ts';

const POLL_MS = 200;

export class Balancer {
  readonly cfg: BalancerConfig;
  readonly #lb: SshHost | null;
  readonly #localSocket: string | null;
  #forwarded = false;

  constructor(cfg: BalancerConfig, lb: SshHost | null, controlDir: string) {
    this.cfg = cfg;
    this.#lb = lb;
    this.#localSocket = lb ? path.join(controlDir, `haproxy-${process.pid}.sock`) : null;
  }

  get usesRuntimeApi(): boolean {
    return this.cfg.type === 'haproxy' && this.cfg.via === 'runtime';
  }

  /** One runtime API command over the forwarded stats socket. */
  async haproxy(cmd: string): Promise<string> {
    if (this.cfg.type !== 'haproxy' || !this.#lb || !this.cfg.socket || !this.#localSocket) {
      throw new BatonError('USAGE', 'the fleet file names no HAProxy stats socket (balancer.host and balancer.socket)');
    }
    if (!this.#forwarded) {
      await this.#lb.connect();
      await this.#lb.forwardUnixSocket(this.#localSocket, this.cfg.socket);
      this.#forwarded = true;
    }
    const sock = this.#localSocket;
    return new Promise((resolve, reject) => {
      const s = net.connect(sock);
      let out = '';
      s.setTimeout(10_000);
      s.on('data', (d) => (out += d));
      s.once('connect', () => s.write(cmd + '\n'));
      s.once('timeout', () => s.destroy(new BatonError('FLEET_ROLLOUT_FAILED', 'no answer within 10 s')));
      s.once('error', (err) => reject(new BatonError('FLEET_ROLLOUT_FAILED', `HAProxy runtime API (${this.cfg.type === 'haproxy' ? this.cfg.socket : ''}): ${err.message}`)));
      s.once('close', () => resolve(out));
    });
  }

  /** HAProxy's current sessions of one server (show stat: scur). */
  async serverSessions(server: string): Promise<{ scur: number; status: string }> {
    const backend = this.cfg.type === 'haproxy' ? this.cfg.backend : '';
    const csv = await this.haproxy('show stat');
    const header = (csv.split('\n')[0] ?? '').replace(/^# /, '').split(',');
    const iScur = header.indexOf('scur');
    const iStatus = header.indexOf('status');
    for (const line of csv.split('\n')) {
      const f = line.split(',');
      if (f[0] === backend && f[1] === server) return { scur: Number(f[iScur]), status: f[iStatus] ?? '' };
    }
    throw new BatonError('FLEET_ROLLOUT_FAILED', `HAProxy has no server ${backend}/${server} (balancer.backend, hosts.NAME.server)`);
  }

  /** Take a host out of rotation and wait until it is quiet. Returns how long the wait took. */
  async drain(host: RemoteHost, mode: 'drain' | 'maint', reason: string): Promise<number> {
    const t0 = Date.now();
    if (this.cfg.type === 'none') throw new BatonError('USAGE', 'the fleet file names no balancer to drain from (balancer.type)');
    const timeoutMs = this.cfg.drainTimeoutMs;
    if (this.usesRuntimeApi) {
      const r = await this.haproxy(`set server ${this.#be()}/${host.cfg.server} state ${mode}`);
      if (r.trim() !== '') throw new BatonError('FLEET_ROLLOUT_FAILED', `HAProxy refused to ${mode} ${host.cfg.server}: ${r.trim()}`);
      // HAProxy alone is told: the host's own agent-check and /_baton/health stay as they are
      // (a balancer configured with both would otherwise get two voices).
      await until(`${host.name}'s sessions in HAProxy to reach 0`, timeoutMs, async () => (await this.serverSessions(host.cfg.server)).scur === 0);
      return Date.now() - t0;
    }
    if (this.cfg.type === 'baton') {
      const server = host.cfg.server;
      await this.#front(['target', 'drain', this.cfg.service, server, '--reason', reason]);
      await until(`the front baton to have nothing in flight to ${server}`, timeoutMs, async () => {
        const t = await this.frontTarget(server);
        return t.inflight === 0 && t.websockets === 0;
      });
      return Date.now() - t0;
    }
    const quietMs = this.cfg.quietMs;
    await host.drain(mode, reason, { quietMs, timeoutMs });
    return Date.now() - t0;
  }

  /** Run baton on the front's host (`balancer.type: baton`) and read its --json answer. */
  async #front<T>(args: string[]): Promise<T> {
    if (this.cfg.type !== 'baton' || !this.#lb) throw new BatonError('USAGE', 'the fleet file names no front baton (balancer.type "baton", balancer.host)');
    const b = this.cfg;
    await this.#lb.connect();
    const all = [...args, '--json', ...(b.config ? ['--config', b.config] : [])];
    const r = await this.#lb.run(`${b.baton} ${all.map(shellQuote).join(' ')}`, { timeoutMs: 60_000 });
    if (r.code !== 0) throw new BatonError('FLEET_ROLLOUT_FAILED', `the front baton on ${b.host}: \`baton ${args.join(' ')}\` failed (exit ${r.code}): ${(r.stderr.trim() || r.stdout.trim()).slice(0, 500)}`);
    try {
      return JSON.parse(r.stdout) as T;
    } catch {
      throw new BatonError('FLEET_ROLLOUT_FAILED', `the front baton on ${b.host}: not JSON: ${r.stdout.slice(0, 200)}`);
    }
  }

  /** How the front baton sees one of its targets. */
  async frontTarget(server: string): Promise<FrontTargetStatus> {
    const service = this.cfg.type === 'baton' ? this.cfg.service : '';
    const st = await this.#front<StatusResponse>(['status', service]);
    const t = st.fronts?.find((f) => f.name === service)?.targets.find((x) => x.name === server);
    if (t === undefined) throw new BatonError('FLEET_ROLLOUT_FAILED', `the front service ${service} has no target "${server}" (hosts.NAME.server names it)`);
    return t;
  }

  async undrain(host: RemoteHost, weightPercent: number | null, reason: string): Promise<void> {
    if (this.cfg.type === 'none') throw new BatonError('USAGE', 'the fleet file names no balancer (balancer.type)');
    if (this.cfg.type === 'baton') {
      if (weightPercent !== null) throw new BatonError('USAGE', 'a front baton takes a host back at its full weight (--weight: give the front service an agent: for the host, and run `baton undrain --weight` on the host)');
      await this.#front(['target', 'undrain', this.cfg.service, host.cfg.server]);
      return;
    }
    if (!this.usesRuntimeApi) await host.undrain(weightPercent, reason);
    else {
      const r = await this.haproxy(`set server ${this.#be()}/${host.cfg.server} state ready`);
      if (r.trim() !== '') throw new BatonError('FLEET_ROLLOUT_FAILED', `HAProxy refused to ready ${host.cfg.server}: ${r.trim()}`);
      if (weightPercent !== null) await this.haproxy(`set server ${this.#be()}/${host.cfg.server} weight ${weightPercent}%`);
    }
  }

  #be(): string {
    return this.cfg.type === 'haproxy' ? this.cfg.backend : '';
  }
}

async function until(what: string, timeoutMs: number, cond: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new BatonError('FLEET_ROLLOUT_FAILED', `timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
