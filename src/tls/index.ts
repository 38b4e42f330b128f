// baton's front door over TLS: the certificate store (files, watched), the
// HTTPS/HTTP2 listeners of the proxy, the redirect from plain HTTP, and ACME
// when configured. The daemon starts it once the plain listeners are up.

import type { Logger } from '../core/log.ts';
import type { TlsConfig } from '../config/types.ts';
import type { TlsStatus } from '../control/protocol.ts';
import type { Proxy } from '../proxy/index.ts';
import { CertificateStore, TLS12_CIPHERS, TLS_MIN_VERSION, type CertificateSetEntry } from './certificates.ts';
import { AcmeManager, type PendingChallenges } from './acme.ts';

export { CertificateStore, type CertificateSetEntry } from './certificates.ts';
export type { PendingChallenges } from './acme.ts';
export { ChallengeMirror } from './challenge-mirror.ts';

/**
 * Proxy worker processes that serve the TLS listeners (src/daemon/workers.ts):
 * the certificates and the ACME challenges stay here, and every change is sent
 * to them.
 */
export interface TlsWorkers {
  /** What is served now (on start and after every change). */
  setCertificates(set: CertificateSetEntry[]): void;
  /** The pending ACME challenges; resolves once every worker answers them. */
  setChallenges(c: PendingChallenges): Promise<void>;
}

export interface FrontDoorOptions {
  proxy: Proxy;
  config: TlsConfig;
  stateDir: string;
  logger: Logger;
  /** With `proxy.workers` > 1: the worker processes that terminate TLS, told every change. */
  workers?: TlsWorkers | null;
}

export class TlsFrontDoor {
  readonly certificates: CertificateStore;
  readonly acme: AcmeManager | null;
  readonly listeners: { host: string; port: number }[];
  readonly #config: TlsConfig;
  readonly #unsubscribe: () => void;

  private constructor(config: TlsConfig, certificates: CertificateStore, acme: AcmeManager | null, listeners: { host: string; port: number }[], unsubscribe: () => void) {
    this.#config = config;
    this.#unsubscribe = unsubscribe;
    this.certificates = certificates;
    this.acme = acme;
    this.listeners = listeners;
  }

  /** For `baton status`: what is served and until when, and how ACME is doing (never key material). */
  status(): TlsStatus {
    const a = this.acme?.state() ?? null;
    const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());
    return {
      listeners: this.listeners.map((l) => `${l.host}:${l.port}`),
      http2: this.#config.http2,
      certificates: this.certificates.list(),
      acme: a === null
        ? null
        : { hosts: a.hosts, directory: this.#config.acme!.directoryUrl, notAfter: iso(a.notAfter), renewAt: iso(a.renewAt), failures: a.failures, lastError: a.lastError, nextAttempt: iso(a.nextAttempt) },
    };
  }

  /** Load the certificates (a file that cannot be used stops the start, naming it), then listen. */
  static async start(opts: FrontDoorOptions): Promise<TlsFrontDoor> {
    const { config, proxy } = opts;
    const logger = opts.logger.child({ component: 'tls' });
    const certificates = new CertificateStore({ logger });
    let acme: AcmeManager | null = null;
    const workers = opts.workers ?? null;
    let unsubscribe = (): void => undefined;
    try {
      await certificates.loadFiles(config.certificates);
      certificates.watch();
      if (config.acme !== null) {
        acme = new AcmeManager({
          config: config.acme,
          stateDir: opts.stateDir,
          certificates,
          logger: logger.child({ component: 'acme' }),
          publishChallenges: workers === null ? undefined : (c) => workers.setChallenges(c),
        });
        await acme.loadStored();
      }
      if (workers !== null) {
        // A replaced file, an issued or renewed certificate: every worker serves it for its next handshakes.
        workers.setCertificates(certificates.exportSet());
        unsubscribe = certificates.onChange(() => workers.setCertificates(certificates.exportSet()));
      }
      const listeners = await proxy.listenTls(config.listeners, {
        certificates,
        minVersion: TLS_MIN_VERSION,
        ciphers: TLS12_CIPHERS,
        http2: config.http2,
        hsts: config.hsts,
        handshakeTimeoutMs: config.handshakeTimeoutMs,
        maxConcurrentStreams: config.maxConcurrentStreams,
        maxConnectionsPerClient: config.maxConnectionsPerClient,
        acmeTlsAlpn: acme !== null && config.acme!.challenge === 'tls-alpn-01' ? acme : null,
      });
      const a = acme;
      proxy.setPlainFront({
        redirectPort: config.redirectHttp ? listeners[0]!.port : null,
        challenge: a === null ? null : (token) => a.challengeResponse(token),
      });
      a?.start();
      return new TlsFrontDoor(config, certificates, a, listeners, unsubscribe);
    } catch (err) {
      unsubscribe();
      await acme?.stop();
      certificates.close();
      throw err;
    }
  }

  /** Stop watching files and renewing (the listeners close with the proxy). */
  async close(): Promise<void> {
    this.#unsubscribe();
    this.certificates.close();
    await this.acme?.stop();
  }
}
