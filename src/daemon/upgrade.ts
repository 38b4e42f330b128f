// The old daemon's side of `baton upgrade` (and SIGUSR2): start the baton
// installed now as a successor, hand it every listening socket as an
// inherited fd and the state (store, instances) by freezing this daemon's
// control plane first; once it serves, stop accepting and drain. If it does
// not come up, take the state back and keep serving. docs/ARCHITECTURE.md
// ("The daemon replaces itself") says why it is done this way.

import { spawn, type ChildProcess } from 'node:child_process';
import { BatonError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { handoverListeners, LISTEN_FDS_ENV } from '../core/listen-fds.ts';
import { inExecutable, selfCommand } from '../core/self.ts';
import type { UpgradeProgress, UpgradeResult } from '../control/protocol.ts';
import type { CounterTotals } from '../proxy/types.ts';
import { FAULT_EXIT_STATUS, SUCCESSOR_ENV, type SuccessorMessage } from './handover.ts';
import { daemonMallocEnv } from '../core/malloc-env.ts';

/** How long a successor may take to say `ready` (store, re-adoption with health checks, listeners). */
export const SUCCESSOR_START_TIMEOUT_MS = 60_000;
/** The successor's stdio: fd 3 is the IPC channel, the listening sockets follow from fd 4. */
const FIRST_LISTENER_FD = 4;

/** What the upgrade needs from the daemon it replaces. */
export interface UpgradingDaemon {
  readonly logger: Logger;
  readonly configFile: string;
  /** Throws UPGRADE_REFUSED, changing nothing, when the state cannot be handed over now. */
  assertUpgradable(): void;
  /** Refuse every operation that changes state and detach the supervisor: the store's one writer steps back. */
  freeze(): void;
  /** The successor failed: take the state back from the store (re-adoption) and accept operations again. */
  thaw(): Promise<void>;
  /**
   * The successor serves: stop accepting, drain (bounded), call `drained`
   * (the proxy's counters are final then), then exit. Returns what is still open.
   */
  retire(drained: (totals: CounterTotals) => Promise<void>): { inflight: number; webSockets: number; deadline: number };
}

/** The argv of the successor: the baton installed now, run as this one was (Node flags included). */
function successorArgv(configFile: string): string[] {
  const [exe, ...rest] = selfCommand();
  const nodeFlags = inExecutable() ? [] : process.execArgv;
  return [exe!, ...nodeFlags, ...rest, 'daemon', '--config', configFile];
}

let running = false;

export async function upgrade(d: UpgradingDaemon, emit: (p: UpgradeProgress) => void): Promise<UpgradeResult> {
  if (running) throw new BatonError('UPGRADE_IN_PROGRESS', 'an upgrade of this daemon is already running');
  d.assertUpgradable();
  running = true;
  const started = performance.now();
  const say = (step: UpgradeProgress['step'], message: string, pid?: number): void => {
    d.logger.info(`upgrade: ${message}`, { step, ...(pid === undefined ? {} : { pid }) });
    emit({ at: Date.now(), step, message, ...(pid === undefined ? {} : { pid }) });
  };
  try {
    d.freeze();
    say('frozen', 'control plane frozen: operations wait for the new daemon; the supervisor and the store are handed over');
    const listeners = handoverListeners();
    const fds: Record<string, number> = {};
    listeners.forEach((l, i) => (fds[l.key] = FIRST_LISTENER_FD + i));
    const [exe, ...args] = successorArgv(d.configFile);
    let child: ChildProcess;
    try {
      child = spawn(exe!, args, {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...listeners.map((l) => l.fd)],
        // bin/baton.js's malloc arena limit, which it removed from this daemon's environment (apps must not inherit it).
        env: { ...process.env, ...daemonMallocEnv(), [LISTEN_FDS_ENV]: JSON.stringify(fds), [SUCCESSOR_ENV]: String(process.pid) },
      });
    } catch (err) {
      await d.thaw();
      throw new BatonError('UPGRADE_FAILED', `cannot start the new daemon (${exe}): ${(err as Error).message}; this daemon keeps serving`);
    }
    say('spawned', `new daemon started (pid ${child.pid}) with ${listeners.length} listening socket(s): ${listeners.map((l) => l.key).join(', ')}`, child.pid);

    const outcome = await awaitSuccessor(child);
    if (outcome.type !== 'ready') {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await new Promise((r) => child.once('exit', r));
      }
      say('failed', `the new daemon did not come up: ${outcome.message}`, child.pid);
      await d.thaw();
      say('resumed', 'this daemon took its state back and keeps serving');
      throw new BatonError('UPGRADE_FAILED', `the new daemon (pid ${child.pid}) did not come up: ${outcome.message}; pid ${process.pid} keeps serving`, outcome.details);
    }
    child.unref();
    const msToServing = Math.round(performance.now() - started);
    say('serving', `new daemon (pid ${outcome.pid}) serves: store open, instances re-adopted, listening (${msToServing} ms)`, outcome.pid);
    // Once drained, this daemon's counters go to the successor (its totals go on from them), and the channel closes.
    const r = d.retire((totals) => handOverCounters(child, totals, d.logger));
    say('draining', `old daemon (pid ${process.pid}) stopped accepting; ${r.inflight} request(s) in flight, ${r.webSockets} WebSocket(s) kept until they close or ${new Date(r.deadline).toISOString()}`, process.pid);
    return { oldPid: process.pid, newPid: outcome.pid, msToServing, drainDeadline: r.deadline, inflight: r.inflight, webSockets: r.webSockets };
  } finally {
    running = false;
  }
}

function handOverCounters(child: ChildProcess, totals: CounterTotals, logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    if (!child.connected) return resolve();
    const msg: SuccessorMessage | { type: 'counters'; totals: CounterTotals } = { type: 'counters', totals };
    child.send(msg, (err) => {
      if (err) logger.warn('upgrade: counters not handed over', { error: err.message });
      if (child.connected) child.disconnect();
      resolve();
    });
  });
}

type Outcome = { type: 'ready'; pid: number } | { type: 'failed'; message: string; details: string[] };

/** The successor's first word (`ready` / `failed`), its exit, or the start timeout, whichever comes first. */
function awaitSuccessor(child: ChildProcess): Promise<Outcome> {
  return new Promise((resolve) => {
    let failure: { message: string; details: string[] } | null = null;
    const done = (o: Outcome): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      child.off('error', onError);
      resolve(o);
    };
    const onMessage = (m: SuccessorMessage): void => {
      if (m?.type === 'ready') done({ type: 'ready', pid: m.pid });
      else if (m?.type === 'failed') {
        // Its exit follows (bounded: it is killed after this wait).
        failure = { message: `${m.code}: ${m.message}`, details: m.details ?? [] };
        clearTimeout(timer);
        timer = setTimeout(() => done({ type: 'failed', ...failure! }), 5000);
      }
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (failure !== null) return done({ type: 'failed', ...failure });
      const how = signal !== null ? `killed by ${signal}` : code === FAULT_EXIT_STATUS ? `exited with status ${code} (the test hook BATON_TEST_UPGRADE_FAULT)` : `exited with status ${code}`;
      done({ type: 'failed', message: `it ${how} during start-up (its output is in this daemon's log)`, details: [] });
    };
    const onError = (err: Error): void => done({ type: 'failed', message: `cannot run it: ${err.message}`, details: [] });
    let timer = setTimeout(() => done({ type: 'failed', message: `no answer within ${SUCCESSOR_START_TIMEOUT_MS / 1000} s`, details: [] }), SUCCESSOR_START_TIMEOUT_MS);
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.once('error', onError);
  });
}
