// A proxy worker's copy of the pending ACME challenges (src/daemon/worker-main.ts).
// The ACME client runs in the control plane (src/tls/acme.ts); the CA's
// validation connection reaches whichever worker the kernel hands it to, so
// every worker answers from this copy: HTTP-01 on its plain listeners,
// TLS-ALPN-01 in its TLS listeners' ALPN and SNI callbacks. The control plane
// sends the whole set on each change and tells the CA to look only once every
// worker has acknowledged it.

import type tls from 'node:tls';
import type { AcmeTlsAlpnResponder } from '../proxy/listeners.ts';
import type { PendingChallenges } from './acme.ts';
import { TLS_MIN_VERSION } from './certificates.ts';

export class ChallengeMirror implements AcmeTlsAlpnResponder {
  #http01 = new Map<string, string>();
  #alpn = new Map<string, tls.SecureContext>();

  /** Answer exactly these from now on. */
  set(c: PendingChallenges): void {
    this.#http01 = new Map(Object.entries(c.http01));
    this.#alpn = new Map(Object.entries(c.tlsAlpn01).map(([name, pair]) => [name, process.getBuiltinModule('node:tls').createSecureContext({ cert: pair.cert, key: pair.key, minVersion: TLS_MIN_VERSION })]));
  }

  /** The key authorization for a pending HTTP-01 token. */
  challengeResponse(token: string): string | undefined {
    return this.#http01.get(token);
  }

  challengeContext(servername: string): tls.SecureContext | undefined {
    return this.#alpn.get(servername.toLowerCase());
  }
}
