// Automatic certificates: one certificate for the configured host names,
// obtained from an ACME directory (Let's Encrypt unless configured) with
// HTTP-01 answered by baton's own plain listeners (or TLS-ALPN-01 by its TLS
// listeners, for hosts whose port 80 is closed), kept in the state directory
// (0600), served at once through the certificate store, and renewed well
// before it expires. Failures are retried with a growing delay while the
// current certificate (if any) keeps being served.
//
// The protocol is acme-client's (RFC 8555: JWS, nonces, orders, polling);
// it is imported only when a certificate is needed, so a daemon that has one
// does not keep the library (and its axios/forge dependencies) resident.

import { mkdir, readFile, rename, writeFile, chmod } from 'node:fs/promises';
import path from 'node:path';
import type tls from 'node:tls';
import { BatonError, errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { AcmeConfig } from '../config/types.ts';
import type { CertificateStore } from './certificates.ts';
import { leafOf, TLS_MIN_VERSION } from './certificates.ts';
import type { AcmeTlsAlpnResponder, KeyPair } from '../proxy/listeners.ts';

const DAY_MS = 86_400_000;
/** How long stop() waits for an order in progress. */
const STOP_WAIT_MS = 5000;
/** Bound on one HTTP request to the ACME directory (acme-client sets none). */
const REQUEST_TIMEOUT_MS = 30_000;
/** Longest wait a timer can take (Node fires longer ones at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The challenges pending now, as plain data: what the proxy workers
 * (src/daemon/workers.ts) answer with on the listeners they accept on.
 */
export interface PendingChallenges {
  /** HTTP-01: token → key authorization. */
  http01: Record<string, string>;
  /** TLS-ALPN-01: lowercase host name → its challenge certificate and key. */
  tlsAlpn01: Record<string, KeyPair>;
}

export interface AcmeManagerOptions {
  config: AcmeConfig;
  stateDir: string;
  certificates: CertificateStore;
  logger: Logger;
  /**
   * Other processes answer the challenges too (the proxy workers): called on
   * every change of the pending challenges; resolves once they answer them.
   * The CA is told a challenge is ready only after.
   */
  publishChallenges?: ((c: PendingChallenges) => Promise<void>) | undefined;
  /** How often the certificate's remaining lifetime is checked. Default 12 h. */
  checkIntervalMs?: number;
  /** First retry delay after a failure, doubled each time up to retryMaxMs. Defaults 1 min and 6 h. */
  retryMinMs?: number;
  retryMaxMs?: number;
}

/** When a certificate valid from notBefore to notAfter should be renewed. */
export function renewalTime(notBefore: Date, notAfter: Date, renewBeforeMs: number | null): Date {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  const before = renewBeforeMs ?? Math.min(30 * DAY_MS, lifetime / 3);
  return new Date(notAfter.getTime() - before);
}

/** What the manager knows, for status and tests. */
export interface AcmeState {
  hosts: string[];
  notAfter: Date | null;
  renewAt: Date | null;
  issued: number;
  failures: number;
  lastError: string | null;
  nextAttempt: Date | null;
}

export class AcmeManager implements AcmeTlsAlpnResponder {
  readonly #config: AcmeConfig;
  readonly #certs: CertificateStore;
  readonly #logger: Logger;
  readonly #dir: string;
  readonly #checkMs: number;
  readonly #retryMinMs: number;
  readonly #retryMaxMs: number;
  /** HTTP-01 token → key authorization, while an order is pending. */
  readonly #tokens = new Map<string, string>();
  /** TLS-ALPN-01: lowercase name → context of its challenge certificate, while an order is pending. */
  readonly #alpn = new Map<string, tls.SecureContext>();
  /** The same challenge certificates as PEM, for publishChallenges. */
  readonly #alpnPairs = new Map<string, KeyPair>();
  readonly #publish: AcmeManagerOptions['publishChallenges'];
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #stopped = false;
  #notBefore: Date | null = null;
  #notAfter: Date | null = null;
  #issued = 0;
  #failures = 0;
  #lastError: string | null = null;
  #nextAttempt: Date | null = null;
  readonly #waiters = new Set<() => void>();

  constructor(opts: AcmeManagerOptions) {
    this.#config = opts.config;
    this.#certs = opts.certificates;
    this.#logger = opts.logger;
    this.#dir = path.join(opts.stateDir, 'acme');
    this.#checkMs = opts.checkIntervalMs ?? 12 * 3_600_000;
    this.#retryMinMs = opts.retryMinMs ?? 60_000;
    this.#retryMaxMs = opts.retryMaxMs ?? 6 * 3_600_000;
    this.#publish = opts.publishChallenges;
  }

  /** What is pending now (plain data; key authorizations and challenge keys: never logged). */
  pendingChallenges(): PendingChallenges {
    return { http01: Object.fromEntries(this.#tokens), tlsAlpn01: Object.fromEntries(this.#alpnPairs) };
  }

  get #certDir(): string {
    return path.join(this.#dir, this.#config.hosts[0]!);
  }

  /** Serve the certificate kept from an earlier run, if it still covers every configured name. */
  async loadStored(): Promise<void> {
    let pair: KeyPair;
    try {
      pair = { cert: await readFile(path.join(this.#certDir, 'cert.pem'), 'utf8'), key: await readFile(path.join(this.#certDir, 'key.pem'), 'utf8') };
    } catch {
      return; // none yet
    }
    try {
      const leaf = leafOf(pair.cert);
      const missing = this.#config.hosts.filter((h) => leaf.checkHost(h) === undefined);
      if (missing.length > 0) {
        this.#logger.info('acme: the stored certificate does not cover every configured name; a new one will be ordered', { missing });
        return;
      }
      this.#certs.setIssued('acme', this.#config.hosts, pair);
      this.#notBefore = new Date(leaf.validFrom);
      this.#notAfter = new Date(leaf.validTo);
    } catch (err) {
      this.#logger.error('acme: the stored certificate cannot be used; a new one will be ordered', { dir: this.#certDir, error: errorMessage(err) });
    }
  }

  /** Begin the check → order → renew cycle (the first check runs now). */
  start(): void {
    this.#schedule(0);
  }

  /** The key authorization for a pending HTTP-01 token. */
  challengeResponse(token: string): string | undefined {
    return this.#tokens.get(token);
  }

  /** The challenge certificate for `servername` while a TLS-ALPN-01 challenge for it is pending. */
  challengeContext(servername: string): tls.SecureContext | undefined {
    return this.#alpn.get(servername.toLowerCase());
  }

  state(): AcmeState {
    return {
      hosts: [...this.#config.hosts],
      notAfter: this.#notAfter,
      renewAt: this.#notBefore && this.#notAfter ? renewalTime(this.#notBefore, this.#notAfter, this.#config.renewBeforeMs) : null,
      issued: this.#issued,
      failures: this.#failures,
      lastError: this.#lastError,
      nextAttempt: this.#nextAttempt,
    };
  }

  /** Resolves at the next change of state() (an issue or a failure). */
  changed(): Promise<void> {
    return new Promise((resolve) => this.#waiters.add(resolve));
  }

  /** Stop checking; an order in progress gets a few seconds to finish (a daemon stop must not hang on a slow CA). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    const running = this.#running;
    if (running === null) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([running.catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_WAIT_MS)))]);
    clearTimeout(timer);
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    const wait = Math.max(0, Math.min(ms, MAX_TIMER_MS));
    this.#nextAttempt = new Date(Date.now() + wait);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#running = this.#check().finally(() => (this.#running = null));
    }, wait);
    this.#timer.unref();
  }

  async #check(): Promise<void> {
    const due = this.#notBefore === null || this.#notAfter === null || Date.now() >= renewalTime(this.#notBefore, this.#notAfter, this.#config.renewBeforeMs).getTime();
    if (!due) {
      this.#schedule(this.#checkMs);
      return;
    }
    try {
      await this.#obtain();
      this.#failures = 0;
      this.#lastError = null;
      this.#schedule(this.#checkMs);
    } catch (err) {
      this.#failures++;
      this.#lastError = errorMessage(err);
      const retry = Math.min(this.#retryMinMs * 2 ** (this.#failures - 1), this.#retryMaxMs);
      this.#logger.error('acme: obtaining a certificate failed; will retry', {
        hosts: this.#config.hosts,
        directory: this.#config.directoryUrl,
        error: this.#lastError,
        failures: this.#failures,
        retryInMs: retry,
        servingUntil: this.#notAfter?.toISOString() ?? null,
      });
      this.#schedule(retry);
    } finally {
      for (const w of this.#waiters) w();
      this.#waiters.clear();
    }
  }

  async #obtain(): Promise<void> {
    const acme = await import('acme-client');
    // One quick retry inside the library (it honours Retry-After); the longer backoff is ours, logged and visible in state().
    const settings = (acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number; retryDefaultDelay: number } }).acmeSettings;
    settings.retryMaxAttempts = 1;
    settings.retryDefaultDelay = 2;
    acme.axios.defaults.timeout = REQUEST_TIMEOUT_MS;
    const cfg = this.#config;
    if (cfg.caFile !== null) {
      // A private directory (pebble, an internal CA): trust its CA for the API's HTTPS, in addition to the system's.
      const ca = await readFile(cfg.caFile, 'utf8').catch((err: unknown) => {
        throw new BatonError('ACME_FAILED', `cannot read tls.acme.ca_file ${cfg.caFile}: ${errorMessage(err)}`);
      });
      acme.axios.defaults.httpsAgent = new (process.getBuiltinModule('node:https').Agent)({ ca: [...process.getBuiltinModule('node:tls').rootCertificates, ca] });
    }
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const { key: accountKey, existed } = await this.#accountKey(acme);
    const client = new acme.Client({ directoryUrl: cfg.directoryUrl, accountKey });
    if (existed) {
      // The account this key already has is looked up (onlyReturnExisting, then a POST-as-GET), so that
      // auto() does not register it again: acme-client follows a registration that finds an account with an
      // update, which without an email carries nothing, and pebble refuses an empty update ("Use POST-as-GET
      // …"): a renewal by a restarted daemon failed. A key this directory does not know is registered by auto().
      await client.createAccount({ onlyReturnExisting: true }).catch(() => undefined);
    }
    const certKey = await acme.crypto.createPrivateEcdsaKey();
    const [, csr] = await acme.crypto.createCsr({ commonName: cfg.hosts[0]!, altNames: cfg.hosts }, certKey);
    this.#logger.info('acme: ordering a certificate', { hosts: cfg.hosts, directory: cfg.directoryUrl });
    let cert: string;
    try {
      cert = await client.auto({
        csr,
        email: cfg.email ?? undefined,
        // Configuring ACME is the operator's agreement to the CA's terms (docs/tls.md).
        termsOfServiceAgreed: true,
        challengePriority: [cfg.challenge],
        // The CA validates; a self-check from here would fail behind NAT without hairpinning.
        skipChallengeVerification: true,
        challengeCreateFn: async (authz, challenge, keyAuthorization) => {
          if (challenge.type === 'http-01') this.#tokens.set(challenge.token, keyAuthorization);
          // acme-client's types name only http-01 and dns-01; it handles tls-alpn-01 all the same.
          if ((challenge.type as string) === 'tls-alpn-01') {
            // RFC 8737: a self-signed certificate for the name carrying the key authorization's digest, served only to acme-tls/1.
            const [key, cert] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization, await acme.crypto.createPrivateEcdsaKey());
            const name = authz.identifier.value.toLowerCase();
            this.#alpn.set(name, process.getBuiltinModule('node:tls').createSecureContext({ cert, key, minVersion: TLS_MIN_VERSION }));
            this.#alpnPairs.set(name, { cert: cert.toString(), key: key.toString() });
          }
          // Whichever worker the CA's connection reaches must know the answer before the CA is told to look.
          await this.#publish?.(this.pendingChallenges());
        },
        challengeRemoveFn: async (authz, challenge) => {
          this.#tokens.delete(challenge.token);
          if ((challenge.type as string) === 'tls-alpn-01') {
            this.#alpn.delete(authz.identifier.value.toLowerCase());
            this.#alpnPairs.delete(authz.identifier.value.toLowerCase());
          }
          await this.#publish?.(this.pendingChallenges());
        },
      });
    } catch (err) {
      throw new BatonError('ACME_FAILED', `ACME order for ${cfg.hosts.join(', ')} at ${cfg.directoryUrl} failed: ${errorMessage(err)}`);
    }
    const pair: KeyPair = { cert, key: certKey.toString() };
    // Served first (a bad pair throws here and nothing is written), then kept.
    this.#certs.setIssued('acme', cfg.hosts, pair);
    await mkdir(this.#certDir, { recursive: true, mode: 0o700 });
    await writePrivate(path.join(this.#certDir, 'key.pem'), pair.key);
    await writePrivate(path.join(this.#certDir, 'cert.pem'), pair.cert);
    const leaf = leafOf(cert);
    this.#notBefore = new Date(leaf.validFrom);
    this.#notAfter = new Date(leaf.validTo);
    this.#issued++;
    this.#logger.info('acme: certificate issued', { hosts: cfg.hosts, serial: leaf.serialNumber, notAfter: this.#notAfter.toISOString() });
  }

  /** The account key kept in the state directory, or a new one (`existed` false). */
  async #accountKey(acme: typeof import('acme-client')): Promise<{ key: Buffer; existed: boolean }> {
    const file = path.join(this.#dir, 'account.key');
    try {
      return { key: await readFile(file), existed: true };
    } catch {
      const key = await acme.crypto.createPrivateEcdsaKey();
      await writePrivate(file, key.toString());
      this.#logger.info('acme: created an account key', { file });
      return { key, existed: false };
    }
  }
}

/** Write a file readable by its owner only, atomically (a crash leaves the old file or the new one). */
async function writePrivate(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}
