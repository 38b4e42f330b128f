// `baton fleet dashboard`: the fleet's hosts in one table in the browser,
// served from the operator's machine, where the fleet's state lives (the
// fleet file, the ssh keys and known_hosts, the rollout records). No new
// trust between hosts: each host is asked exactly as `baton fleet status`
// asks it, over one ssh master connection per host (its daemon's control
// socket forwarded over it after the first `baton status`), every few
// seconds; a host whose connection dropped is reconnected on the next round.
// The page is served on loopback with a one-time sign-in link, as the
// daemon's dashboard is; Enter in the terminal prints another link.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseDuration } from '../../config/duration.ts';
import { BatonError, errorMessage } from '../../core/errors.ts';
import { createLogger } from '../../core/log.ts';
import { formatDuration } from '../../core/time.ts';
import type { StatusResponse } from '../../control/protocol.ts';
import { DEFAULT_FLEET_FILE, loadFleetConfig, type FleetConfig, type FleetHostConfig } from '../../fleet/config.ts';
import { settledWithLimit } from '../../fleet/limit.ts';
import { RemoteHost } from '../../fleet/remote.ts';
import { defaultControlDir, SshHost } from '../../fleet/ssh.ts';
import { readRollout, stateFile } from '../../fleet/state.ts';
import { FleetDashboard } from '../../dashboard/fleet-server.ts';
import type { FleetHostView, FleetRolloutView, FleetView } from '../../dashboard/fleet-page.ts';
import { stringFlag, type CliContext } from '../context.ts';

const XDG_OPEN = '/usr/bin/xdg-open';
const DEFAULT_EVERY_MS = 2000;
const SESSION_TIMEOUT_MS = 12 * 3600_000;

/** One host, asked over its own ssh master; a new master (in a directory of its own) when the last one is gone. */
class HostWatch {
  readonly cfg: FleetHostConfig;
  readonly #fleet: FleetConfig;
  readonly #controlDir: string;
  #remote: RemoteHost | null = null;
  #opened = false;
  #generation = 0;
  #seenAt: number | null = null;

  constructor(cfg: FleetHostConfig, fleet: FleetConfig, controlDir: string) {
    this.cfg = cfg;
    this.#fleet = fleet;
    this.#controlDir = controlDir;
  }

  async poll(): Promise<FleetHostView> {
    try {
      if (this.#remote && !this.#remote.ssh.connected) this.close();
      if (!this.#remote) {
        // A master that died may leave its control socket behind: a new generation gets a fresh path.
        const dir = this.#generation++ === 0 ? this.#controlDir : path.join(this.#controlDir, `g${this.#generation}`);
        this.#remote = new RemoteHost(this.cfg, new SshHost(this.cfg.name, this.cfg.destination, { ...this.#fleet.ssh, controlDir: dir }));
        this.#remote.actor = 'baton fleet dashboard';
      }
      const st = this.#opened ? await this.#remote.status() : await this.#remote.open();
      this.#opened = true;
      this.#seenAt = Date.now();
      return this.#row(st);
    } catch (err) {
      return { host: this.cfg.name, destination: this.cfg.destination, reachable: false, error: errorMessage(err), version: null, drain: null, services: [], seenAt: this.#seenAt };
    }
  }

  #row(st: StatusResponse): FleetHostView {
    const wanted = this.cfg.services;
    return {
      host: this.cfg.name,
      destination: this.cfg.destination,
      reachable: true,
      error: null,
      version: st.daemon.version,
      drain: st.host?.drain ?? null,
      services: st.services.filter((s) => wanted.length === 0 || wanted.includes(s.name)).map((s) => {
        const serving = s.instances.filter((i) => i.role === 'current' || i.role === 'canary');
        return { name: s.name, current: s.currentRelease, standby: s.standbyRelease, standbyWarm: s.standbyWarmUntil !== null, healthy: serving.filter((i) => i.healthy).length, instances: serving.length, deploying: s.deploying };
      }),
      seenAt: this.#seenAt,
    };
  }

  close(): void {
    this.#remote?.ssh.close();
    this.#remote = null;
    this.#opened = false;
  }
}

/** The rollouts recorded on this machine for the fleet's services (the latest of each). */
function recordedRollouts(cfg: FleetConfig, services: string[]): { rollouts: FleetRolloutView[]; problems: string[] } {
  const rollouts: FleetRolloutView[] = [];
  const problems: string[] = [];
  for (const service of services) {
    try {
      const r = readRollout(cfg.name, service);
      if (!r) continue;
      rollouts.push({
        id: r.id,
        service: r.service,
        status: r.status,
        artifact: r.artifact.name,
        operator: r.operator,
        createdAt: r.createdAt,
        error: r.error,
        hosts: Object.fromEntries(Object.entries(r.hosts).map(([n, h]) => [n, { phase: h.phase, from: h.from, to: h.to, error: h.error, at: h.history[h.history.length - 1]?.at ?? null }])),
      });
    } catch (err) {
      problems.push(`${stateFile(cfg.name, service)}: ${errorMessage(err)}`);
    }
  }
  return { rollouts, problems };
}

/** A loopback address to listen on: the page is plain HTTP. */
function listenFlag(text: string | undefined): { host: string; port: number } {
  if (text === undefined) return { host: '127.0.0.1', port: 0 };
  const m = /^(\[::1\]|localhost|127(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(text);
  const port = Number(m?.[2]);
  if (!m || port > 65535) throw new BatonError('USAGE', `--listen must be a loopback address and port such as 127.0.0.1:9191 (the page is plain HTTP: reach it from elsewhere through an ssh tunnel), got "${text}"`);
  return { host: m[1] === '[::1]' ? '::1' : m[1]!, port };
}

function durationFlag(ctx: CliContext, name: string, min: number, max: number): number | undefined {
  const text = stringFlag(ctx, name);
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === undefined || ms < min || ms > max) throw new BatonError('USAGE', `--${name} must be a duration from ${formatDuration(min)} to ${formatDuration(max)}, got "${text}"`);
  return ms;
}

export async function fleetDashboardCommand(ctx: CliContext): Promise<number> {
  if (ctx.args.length > 0) throw new BatonError('USAGE', 'usage: baton fleet dashboard [--listen 127.0.0.1:PORT] [--every 2s] [--ttl 2m] [--fleet FILE]');
  const listen = listenFlag(stringFlag(ctx, 'listen'));
  const everyMs = durationFlag(ctx, 'every', 500, 10 * 60_000) ?? DEFAULT_EVERY_MS;
  const ttlMs = durationFlag(ctx, 'ttl', 1000, 10 * 60_000);
  const cfg = await loadFleetConfig(stringFlag(ctx, 'fleet') ?? DEFAULT_FLEET_FILE);
  const controlDir = defaultControlDir();
  const watches = cfg.hosts.map((h) => new HostWatch(h, cfg, controlDir));

  let view: FleetView = { fleet: cfg.name, file: cfg.file, hosts: [], rollouts: [], refreshedAt: Date.now(), everyMs, problems: [] };
  const refresh = async (): Promise<void> => {
    const settled = await settledWithLimit(watches, cfg.ssh.maxParallel, (w) => w.poll());
    const hosts = settled.map((r) => (r as PromiseFulfilledResult<FleetHostView>).value);
    const services = [...new Set([...Object.keys(cfg.services), ...hosts.flatMap((h) => h.services.map((s) => s.name))])].sort();
    view = { ...view, hosts, ...recordedRollouts(cfg, services), refreshedAt: Date.now() };
  };

  let dash: FleetDashboard | null = null;
  let stopping = false;
  let wake: (() => void) | null = null;
  const stop = (): void => {
    stopping = true;
    wake?.();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const lines = createInterface({ input: process.stdin });
  try {
    // The first round before the link: the page opens with every host in it.
    await refresh();
    dash = await FleetDashboard.start({ ...listen, view: () => view, sessionTimeoutMs: SESSION_TIMEOUT_MS, logger: createLogger('warn', (l) => process.stderr.write(l)) });
    const printLink = (): string => {
      const link = dash!.login(ttlMs);
      if (ctx.json) ctx.out(JSON.stringify(link) + '\n');
      else ctx.out(`${link.url}\n(signs one browser in, once, within ${formatDuration(link.expiresAt - Date.now())}; Enter prints another link, Ctrl-C stops)\n`);
      return link.url;
    };
    const first = printLink();
    lines.on('line', () => void printLink());
    // Only where a browser can show up: a terminal over ssh has no display.
    if (!ctx.json && (process.env['DISPLAY'] || process.env['WAYLAND_DISPLAY']) && existsSync(XDG_OPEN)) {
      const child = spawn(XDG_OPEN, [first], { detached: true, stdio: 'ignore' });
      child.on('error', () => {});
      child.unref();
    }
    if (!ctx.json) ctx.out(`${watches.length} hosts of ${cfg.name}, asked over ssh every ${formatDuration(everyMs)}\n`);
    while (!stopping) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, everyMs);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wake = null;
      if (stopping) break;
      await refresh();
      dash.update();
    }
    return 0;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    lines.close();
    await dash?.close();
    for (const w of watches) w.close();
  }
}
