// The audit log of the control API and the dashboard: one JSON line per action
// (every request that changes something, every sign-in, and every refused
// one), in <state_dir>/audit.log
// (0600): when, through which door, who, what, and how it ended. Request
// bodies and tokens are never written.

import { appendFile, chmod } from 'node:fs/promises';
import type { Logger } from '../core/log.ts';
import { errorMessage } from '../core/errors.ts';

export interface AuditEntry {
  /**
   * "unix" (the socket) or "tcp" (the TLS listener); for the dashboard's
   * sign-ins and actions, "dashboard" (its loopback listener) or
   * "dashboard-tls" (mounted on the TLS listener).
   */
  via: 'unix' | 'tcp' | 'dashboard' | 'dashboard-tls';
  /** For tcp and the dashboard the client's address; for unix "local". */
  peer: string;
  /** Who the client says it is (the CLI sends user@host), when it says; for the dashboard, its session. */
  actor: string | null;
  method: string;
  path: string;
  status: number;
  /** Why it was refused, for a 401 / 4xx (never the token). */
  refused?: string;
}

export class AuditLog {
  readonly #file: string;
  readonly #logger: Logger;
  /** Writes are chained so lines keep their order. */
  #tail: Promise<void> = Promise.resolve();
  #created = false;

  constructor(file: string, logger: Logger) {
    this.#file = file;
    this.#logger = logger;
  }

  record(entry: AuditEntry): void {
    const line = JSON.stringify({ time: new Date().toISOString(), ...entry }) + '\n';
    this.#tail = this.#tail
      .then(async () => {
        await appendFile(this.#file, line, { mode: 0o600 });
        if (!this.#created) {
          // appendFile's mode applies only when it creates the file: make sure of 0600 once.
          await chmod(this.#file, 0o600);
          this.#created = true;
        }
      })
      .catch((err: unknown) => this.#logger.error('control: cannot write the audit log', { file: this.#file, error: errorMessage(err) }));
  }

  /** Resolves once every line recorded so far is written. */
  flushed(): Promise<void> {
    return this.#tail;
  }
}
