// Who may use the dashboard: one-time login links handed out through the
// control socket (so only someone who can run `baton` on the host gets one),
// then a session cookie, and a CSRF token per session for every action.
// Secrets are compared in constant time; a used link is remembered until it
// would have expired, so a second use is refused with a clear reason.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const DEFAULT_LOGIN_TTL_MS = 2 * 60_000;
export const MAX_LOGIN_TTL_MS = 10 * 60_000;
const MAX_SESSIONS = 64;
const MAX_PENDING_LOGINS = 256;

/** A credential as handed out: "<id>.<secret>". Only the secret's hash is kept. */
interface Credential {
  id: string;
  secretHash: Buffer;
}

/**
 * Where a browser reaches the dashboard: its own loopback listener (plain
 * HTTP), or the TLS control listener it is mounted on. A link is made for one
 * door and a session lives behind the door it was opened at.
 */
export type Door = 'local' | 'tls';

interface LoginLink extends Credential {
  door: Door;
  expiresAt: number;
  usedAt: number | null;
}

export interface Session extends Credential {
  door: Door;
  /** Sent with every action; compared in constant time. */
  csrf: string;
  createdAt: number;
  lastSeenAt: number;
}

export type LoginRefusal = 'malformed' | 'unknown' | 'expired' | 'used' | 'door';

const hash = (s: string): Buffer => createHash('sha256').update(s).digest();
const token = (bytes: number): string => randomBytes(bytes).toString('base64url');

function issue(): { id: string; secret: string; text: string } {
  const id = randomBytes(9).toString('base64url');
  const secret = token(32);
  return { id, secret, text: `${id}.${secret}` };
}

function split(text: string): { id: string; secret: string } | null {
  const m = /^([A-Za-z0-9_-]{12})\.([A-Za-z0-9_-]{43})$/.exec(text);
  return m ? { id: m[1]!, secret: m[2]! } : null;
}

function matches(c: Credential, secret: string): boolean {
  return timingSafeEqual(c.secretHash, hash(secret));
}

export class DashboardAuth {
  readonly #logins = new Map<string, LoginLink>();
  readonly #sessions = new Map<string, Session>();
  readonly #sessionTimeoutMs: () => number;
  readonly #now: () => number;

  constructor(opts: { sessionTimeoutMs: () => number; now?: () => number }) {
    this.#sessionTimeoutMs = opts.sessionTimeoutMs;
    this.#now = opts.now ?? Date.now;
  }

  /** A new one-time login token for one door, valid for ttlMs. */
  issueLogin(ttlMs: number, door: Door = 'local'): { token: string; expiresAt: number } {
    this.#prune();
    if (this.#logins.size >= MAX_PENDING_LOGINS) this.#logins.delete(this.#logins.keys().next().value!);
    const t = issue();
    const expiresAt = this.#now() + ttlMs;
    this.#logins.set(t.id, { id: t.id, secretHash: hash(t.secret), door, expiresAt, usedAt: null });
    return { token: t.text, expiresAt };
  }

  /** Spend a login token at a door: a new session there, or why not. */
  redeem(text: string, door: Door = 'local'): { session: Session; cookie: string } | LoginRefusal {
    const parts = split(text);
    if (!parts) return 'malformed';
    const link = this.#logins.get(parts.id);
    if (!link || !matches(link, parts.secret)) return 'unknown';
    if (link.usedAt !== null) return 'used';
    if (this.#now() >= link.expiresAt) return 'expired';
    // Not spent: the operator may still open it where it was meant to go.
    if (link.door !== door) return 'door';
    link.usedAt = this.#now();
    return this.#newSession(door);
  }

  /** The session a cookie value names, if it is valid at this door; touching it keeps it alive. */
  session(cookie: string | undefined, door: Door = 'local'): Session | null {
    if (!cookie) return null;
    const parts = split(cookie);
    if (!parts) return null;
    const s = this.#sessions.get(parts.id);
    if (!s || !matches(s, parts.secret) || s.door !== door) return null;
    const now = this.#now();
    if (now - s.lastSeenAt > this.#sessionTimeoutMs()) {
      this.#sessions.delete(s.id);
      return null;
    }
    s.lastSeenAt = now;
    return s;
  }

  checkCsrf(s: Session, given: unknown): boolean {
    if (typeof given !== 'string' || given.length !== s.csrf.length) return false;
    return timingSafeEqual(Buffer.from(given), Buffer.from(s.csrf));
  }

  end(s: Session): void {
    this.#sessions.delete(s.id);
  }

  #newSession(door: Door): { session: Session; cookie: string } {
    if (this.#sessions.size >= MAX_SESSIONS) {
      const oldest = [...this.#sessions.values()].sort((a, b) => a.lastSeenAt - b.lastSeenAt)[0]!;
      this.#sessions.delete(oldest.id);
    }
    const t = issue();
    const now = this.#now();
    const s: Session = { id: t.id, secretHash: hash(t.secret), door, csrf: token(32), createdAt: now, lastSeenAt: now };
    this.#sessions.set(s.id, s);
    return { session: s, cookie: t.text };
  }

  /** Used links are kept until they would have expired (so a reuse gets "already used"), then dropped. */
  #prune(): void {
    const now = this.#now();
    for (const [id, l] of this.#logins) if (now >= l.expiresAt) this.#logins.delete(id);
  }
}
