// The beta link tokens already used: a link works once, and "once" must hold
// across daemon restarts (the signing key survives them, so the link would too).

import type { DatabaseSync, StatementSync } from 'node:sqlite';

export class BetaTokenTable {
  #claim: StatementSync;
  #sweep: StatementSync;

  constructor(db: DatabaseSync) {
    // DO NOTHING on a used id: the insert changes no row, and that is the answer.
    this.#claim = db.prepare('INSERT INTO beta_tokens_used (id, expires_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING');
    this.#sweep = db.prepare('DELETE FROM beta_tokens_used WHERE expires_at <= ?');
  }

  /** Mark token `id` used; true the first time, false if it was used before. */
  claim(id: string, expiresAt: number): boolean {
    return Number(this.#claim.run(id, expiresAt).changes) === 1;
  }

  /** Forget tokens that have expired: an expired token is refused as expired anyway. */
  sweep(now: number): void {
    this.#sweep.run(now);
  }
}
