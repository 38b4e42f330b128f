// The operator's drains of front targets (`baton target drain SERVICE TARGET`):
// a decision, so it is written to <state_dir>/front-targets.json before it is
// acted on, and a restarted daemon keeps a drained target drained.

import { readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../core/log.ts';

export interface OperatorDrain {
  mode: 'drain';
  since: number;
  reason: string;
}

type Saved = Record<string, Record<string, OperatorDrain>>;

export class TargetModes {
  readonly #file: string;
  #saved: Saved;
  /** The last change being written (set() queues behind it). */
  #writing: Promise<void> = Promise.resolve();

  constructor(stateDir: string, logger: Logger) {
    this.#file = path.join(stateDir, 'front-targets.json');
    this.#saved = TargetModes.#read(this.#file, logger);
  }

  static #read(file: string, logger: Logger): Saved {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return {};
    }
    try {
      const data = JSON.parse(text) as unknown;
      if (data !== null && typeof data === 'object' && !Array.isArray(data)) return data as Saved;
    } catch {
      // fall through
    }
    // Unlike a host's own drain file, nothing safer can be guessed per target: say so loudly.
    logger.warn('front target drains unreadable: every target is in rotation again', { file });
    return {};
  }

  get(service: string, target: string): OperatorDrain | null {
    return this.#saved[service]?.[target] ?? null;
  }

  /**
   * Write the new state first, then hold it in memory (a failed write changes
   * nothing). One change at a time: two computed from the same state (a fleet
   * undraining its hosts in parallel) would each drop the other's, and would
   * rename the same temporary file under each other.
   */
  set(service: string, target: string, drain: OperatorDrain | null): Promise<void> {
    const done = this.#writing.then(() => this.#write(service, target, drain));
    this.#writing = done.catch(() => undefined);
    return done;
  }


  async #write(service: string, target: string, drain: OperatorDrain | null): Promise<void> {
    const next: Saved = structuredClone(this.#saved);
    const mine = (next[service] ??= {});
    if (drain === null) delete mine[target];
    else mine[target] = drain;
    if (Object.keys(mine).length === 0) delete next[service];
    const tmp = `${this.#file}.tmp`;
    await writeFile(tmp, JSON.stringify(next, null, 2) + '\n');
    await rename(tmp, this.#file);
    this.#saved = next;
  }
}
