// This host's place in the load balancer in front of it: in rotation
// ("ready"), drained (no new requests, the ones in flight finish), in
// maintenance, or ready at a share of its weight (a host canary). The state
// is the operator's decision, so it is written to <state_dir>/host-drain.json
// before it is acted on and survives a daemon restart. Balancers learn it
// by pulling: HAProxy's agent-check (a TCP connection answered with one line)
// or any balancer's health check of /_baton/health (503 unless ready).

import { bindListener } from '../core/listen-fds.ts';
import { readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { BatonError, errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';

export type DrainMode = 'ready' | 'drain' | 'maint';

export interface HostDrainState {
  mode: DrainMode;
  /** Share of the host's configured weight HAProxy should use while ready (1-100), null = unchanged. */
  weightPercent: number | null;
  since: number;
  reason: string;
}

const READY: HostDrainState = { mode: 'ready', weightPercent: null, since: 0, reason: '' };

/** The line HAProxy's agent-check reads (its documented words: ready, drain, maint, NN%). */
export function agentAnswer(s: HostDrainState): string {
  if (s.mode !== 'ready') return `${s.mode}\n`;
  return s.weightPercent === null ? 'ready up 100%\n' : `ready up ${s.weightPercent}%\n`;
}

export class HostDrain {
  readonly #file: string;
  readonly #logger: Logger;
  readonly #onChange: (s: HostDrainState) => void;
  #state: HostDrainState;
  #server: net.Server | null = null;

  constructor(stateDir: string, logger: Logger, onChange: (s: HostDrainState) => void) {
    this.#file = path.join(stateDir, 'host-drain.json');
    this.#logger = logger;
    this.#onChange = onChange;
    this.#state = HostDrain.#read(this.#file, logger);
    onChange(this.#state);
  }

  static #read(file: string, logger: Logger): HostDrainState {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return READY;
    }
    try {
      const s = JSON.parse(text) as HostDrainState;
      if (s.mode === 'ready' || s.mode === 'drain' || s.mode === 'maint') return s;
    } catch {
      // fall through: an unreadable file must not put a drained host back by surprise
    }
    logger.warn('host drain state unreadable: treating the host as drained until told otherwise', { file });
    return { mode: 'drain', weightPercent: null, since: Date.now(), reason: `unreadable ${file}` };
  }

  get state(): HostDrainState {
    return this.#state;
  }

  async set(mode: DrainMode, weightPercent: number | null, reason: string): Promise<HostDrainState> {
    if (weightPercent !== null && (!Number.isInteger(weightPercent) || weightPercent < 1 || weightPercent > 100)) {
      throw new BatonError('BAD_REQUEST', `the weight must be a percentage from 1 to 100, got ${weightPercent}`);
    }
    if (weightPercent !== null && mode !== 'ready') throw new BatonError('BAD_REQUEST', 'a weight applies only to a ready host');
    const next: HostDrainState = { mode, weightPercent, since: Date.now(), reason };
    const tmp = `${this.#file}.tmp`;
    await writeFile(tmp, JSON.stringify(next) + '\n');
    await rename(tmp, this.#file);
    this.#state = next;
    this.#onChange(next);
    this.#logger.info('host drain state changed', { mode, weightPercent, reason });
    return next;
  }

  /** Answer HAProxy's agent-check on host:port: one line per connection, then close. */
  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    const server = net.createServer((sock) => {
      sock.on('error', () => {});
      sock.end(agentAnswer(this.#state));
    });
    try {
      await bindListener(server, 'agent-check', host, port);
    } catch (err) {
      throw new BatonError('LISTEN_FAILED', `cannot listen for the agent-check on ${host}:${port}: ${errorMessage(err)}`);
    }
    this.#server = server;
    const a = server.address() as net.AddressInfo;
    this.#logger.info('agent-check listening', { host: a.address, port: a.port });
    return { host: a.address, port: a.port };
  }

  close(): Promise<void> {
    const s = this.#server;
    this.#server = null;
    return new Promise((r) => (s ? s.close(() => r()) : r()));
  }
}
