// The certificates the TLS listeners serve: one cached SecureContext per
// certificate, picked per handshake by SNI (exact name, then "*.parent", then
// the default). Files are watched; a replaced pair is loaded into a new context
// for new handshakes while open connections keep theirs. A file that does not
// load (half-written, key that does not match) keeps the old context and logs
// an error; the next change is tried again.

import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import path from 'node:path';
import type tls from 'node:tls';
import { BatonError, errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { CertificateFiles } from '../config/types.ts';
import type { CertificateProvider, KeyPair } from '../proxy/listeners.ts';

/**
 * TLS 1.2 and 1.3 only; for 1.2 the forward-secret AEAD suites of Mozilla's
 * "intermediate" profile (TLS 1.3 suites are OpenSSL's, all AEAD).
 */
export const TLS_MIN_VERSION = 'TLSv1.2';
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

interface Entry {
  /** Where it comes from: "files" entries are watched; "issued" ones are set by ACME. */
  readonly id: string;
  hosts: string[];
  pair: KeyPair;
  context: tls.SecureContext;
  notAfter: Date;
  isDefault: boolean;
  files: { cert: string; key: string } | null;
  /** mtimes seen at the last load, to notice a change when polling. */
  mtimes: string;
}

/**
 * One served certificate as plain data, for the proxy workers
 * (src/daemon/workers.ts): the control plane loads, watches and obtains
 * certificates, and sends the whole set to every worker on each change. PEM
 * texts with the key: they cross a process boundary (the workers' IPC
 * channels), never a log.
 */
export interface CertificateSetEntry {
  hosts: string[];
  pair: KeyPair;
  /** The one served without SNI and for names no entry has. */
  isDefault: boolean;
}

export interface CertificateStoreOptions {
  logger: Logger;
  /** Quiet time after a file event before the pair is read (a deploy writes both files). */
  debounceMs?: number;
  /** How often mtimes are compared besides fs.watch (which misses some replacements, e.g. over NFS). */
  pollMs?: number;
}

/** Build the context once: OpenSSL parses and checks the pair here (mismatched key → throws). */
export function secureContext(pair: KeyPair): tls.SecureContext {
  // node:tls when a certificate is first used, not at start: a daemon without TLS never loads it.
  return process.getBuiltinModule('node:tls').createSecureContext({ cert: pair.cert, key: pair.key, minVersion: TLS_MIN_VERSION, ciphers: TLS12_CIPHERS });
}

/** The leaf certificate of a PEM chain. */
export function leafOf(certPem: string): X509Certificate {
  return new X509Certificate(certPem);
}

export class CertificateStore implements CertificateProvider {
  readonly #logger: Logger;
  readonly #debounceMs: number;
  readonly #pollMs: number;
  readonly #entries = new Map<string, Entry>();
  /** Lowercase exact name (or "*.parent") → entry. Rebuilt on every change; read per handshake. */
  #byName = new Map<string, Entry>();
  #default: Entry | null = null;
  readonly #defaultListeners = new Set<() => void>();
  readonly #changeListeners = new Set<() => void>();
  readonly #watchers: FSWatcher[] = [];
  readonly #timers = new Map<string, NodeJS.Timeout>();
  #poll: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(opts: CertificateStoreOptions) {
    this.#logger = opts.logger;
    this.#debounceMs = opts.debounceMs ?? 250;
    this.#pollMs = opts.pollMs ?? 30_000;
  }

  /** Load every configured pair; a file that cannot be used is an error naming it (start-up refuses). */
  async loadFiles(list: CertificateFiles[]): Promise<void> {
    for (const [i, c] of list.entries()) {
      const id = `files:${i}`;
      const { pair, mtimes } = await readPair(c.certFile, c.keyFile);
      const entry = this.#makeEntry(id, c.hosts, pair, c.isDefault, { cert: c.certFile, key: c.keyFile }, mtimes);
      this.#entries.set(id, entry);
    }
    this.#rebuild();
  }

  /** Start watching the files of every file entry (fs.watch on their directories, and a slow mtime poll). */
  watch(): void {
    const dirs = new Map<string, Set<string>>();
    for (const e of this.#entries.values()) {
      if (e.files === null) continue;
      for (const f of [e.files.cert, e.files.key]) {
        const d = path.dirname(f);
        if (!dirs.has(d)) dirs.set(d, new Set());
        dirs.get(d)!.add(e.id);
      }
    }
    // The directory, not the file: a replacement by rename (certbot, `mv`) gives the name a new inode.
    for (const [dir, ids] of dirs) {
      try {
        const w = watch(dir, { persistent: false }, () => {
          for (const id of ids) this.#schedule(id);
        });
        w.on('error', (err) => this.#logger.warn('tls: watching certificate directory failed; polling only', { dir, error: errorMessage(err) }));
        this.#watchers.push(w);
      } catch (err) {
        this.#logger.warn('tls: cannot watch certificate directory; polling only', { dir, error: errorMessage(err) });
      }
    }
    this.#poll = setInterval(() => void this.#pollAll(), this.#pollMs);
    this.#poll.unref();
  }

  /**
   * Read every certificate file again now (`baton reload`, as nginx's reload
   * does): a replacement the watcher and the poll have not seen yet is served
   * from now on; an unchanged pair changes nothing, a broken one keeps the old.
   */
  async recheck(): Promise<void> {
    await Promise.all([...this.#entries.values()].filter((e) => e.files !== null).map((e) => this.#reload(e.id)));
  }

  /** A pair obtained at run time (ACME): served from now on for `hosts`. Throws when the pair does not load. */
  setIssued(id: string, hosts: string[], pair: KeyPair): void {
    const entry = this.#makeEntry(`issued:${id}`, hosts, pair, false, null, '');
    this.#entries.set(entry.id, entry);
    this.#rebuild();
  }

  /** What is served, in the order that decides who wins a name (files, then issued), for the proxy workers' mirrors. */
  exportSet(): CertificateSetEntry[] {
    return this.#ordered().map((e) => ({ hosts: [...e.hosts], pair: e.pair, isDefault: e === this.#default }));
  }

  /**
   * A proxy worker's store: serve exactly `set` (what the control plane's
   * store exported), in place of what was served. Contexts of unchanged pairs
   * are kept. Throws (and changes nothing) when a pair does not load.
   */
  mirror(set: CertificateSetEntry[]): void {
    const old = new Map([...this.#entries.values()].map((e) => [`${e.pair.cert}\n${e.pair.key}`, e]));
    const next = new Map<string, Entry>();
    for (const [i, c] of set.entries()) {
      const id = `mirror:${i}`;
      const same = old.get(`${c.pair.cert}\n${c.pair.key}`);
      const entry = same !== undefined
        ? { ...same, id, hosts: [...c.hosts], isDefault: c.isDefault }
        : this.#makeEntry(id, c.hosts, c.pair, c.isDefault, null, '', false);
      next.set(id, entry);
    }
    this.#entries.clear();
    for (const [id, e] of next) this.#entries.set(id, e);
    this.#rebuild();
  }

  /** Called after every change of what is served (a file reloaded, a certificate issued); returns an unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  /** The certificate currently served for `name` (tests, status). */
  certificateFor(name: string): X509Certificate | null {
    const e = this.#lookup(name.toLowerCase()) ?? this.#default;
    return e === null ? null : leafOf(e.pair.cert);
  }

  /** Every certificate served, for status (no key material). */
  list(): Array<{ hosts: string[]; source: 'file' | 'acme'; file: string | null; notAfter: string; isDefault: boolean }> {
    return [...this.#entries.values()].map((e) => ({
      hosts: [...e.hosts],
      source: e.files === null ? 'acme' : 'file',
      file: e.files?.cert ?? null,
      notAfter: e.notAfter.toISOString(),
      isDefault: e === this.#default,
    }));
  }

  SNICallback = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void => {
    const e = this.#lookup(servername.toLowerCase()) ?? this.#default;
    // No context: the handshake goes on with the server's (default) one, if any.
    cb(null, e?.context);
  };

  defaultPair(): KeyPair | null {
    return this.#default?.pair ?? null;
  }

  onDefaultChange(listener: () => void): () => void {
    this.#defaultListeners.add(listener);
    return () => this.#defaultListeners.delete(listener);
  }

  close(): void {
    this.#closed = true;
    for (const w of this.#watchers.splice(0)) w.close();
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    if (this.#poll !== null) clearInterval(this.#poll);
  }

  #lookup(name: string): Entry | undefined {
    const exact = this.#byName.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf('.');
    return dot > 0 ? this.#byName.get(`*${name.slice(dot)}`) : undefined;
  }

  #makeEntry(id: string, hosts: string[], pair: KeyPair, isDefault: boolean, files: Entry['files'], mtimes: string, warn = true): Entry {
    const where = files === null ? id : files.cert;
    let context: tls.SecureContext;
    let leaf: X509Certificate;
    try {
      leaf = leafOf(pair.cert);
      context = secureContext(pair);
    } catch (err) {
      throw new BatonError('TLS_CERT_INVALID', `${where}: cannot use this certificate and key${files ? ` (${files.key})` : ''}: ${errorMessage(err)}`);
    }
    for (const h of warn ? hosts : []) {
      const covered = h.startsWith('*.') ? leaf.checkHost(`x${h.slice(1)}`, { wildcards: true }) : leaf.checkHost(h);
      if (covered === undefined) this.#logger.warn('tls: the certificate does not name a host it is configured for', { cert: where, host: h });
    }
    return { id, hosts, pair, context, notAfter: new Date(leaf.validTo), isDefault, files, mtimes };
  }

  /** Files first, in config order; an issued certificate for the same name wins (it is the newer, automatic one). */
  #ordered(): Entry[] {
    return [...this.#entries.values()].sort((a, b) => Number(a.files === null) - Number(b.files === null));
  }

  #rebuild(): void {
    const byName = new Map<string, Entry>();
    let def: Entry | null = null;
    const ordered = this.#ordered();
    for (const e of ordered) {
      for (const h of e.hosts) byName.set(h, e);
      if (e.isDefault) def = e;
    }
    def ??= ordered[0] ?? null;
    // By the pair served: a mirror's entries are new objects on every set, but an unchanged pair needs no new context.
    const changed = (def?.pair ?? null) !== this.#defaultSeen;
    this.#byName = byName;
    this.#default = def;
    if (changed) {
      this.#defaultSeen = def?.pair ?? null;
      for (const l of this.#defaultListeners) l();
    }
    for (const l of this.#changeListeners) l();
  }

  #defaultSeen: KeyPair | null = null;

  #schedule(id: string): void {
    if (this.#closed) return;
    clearTimeout(this.#timers.get(id));
    const t = setTimeout(() => {
      this.#timers.delete(id);
      void this.#reload(id);
    }, this.#debounceMs);
    t.unref();
    this.#timers.set(id, t);
  }

  async #pollAll(): Promise<void> {
    for (const e of this.#entries.values()) {
      if (e.files === null || this.#timers.has(e.id)) continue;
      const m = await mtimesOf(e.files.cert, e.files.key).catch(() => null);
      if (m !== null && m !== e.mtimes) this.#schedule(e.id);
    }
  }

  async #reload(id: string): Promise<void> {
    const old = this.#entries.get(id);
    if (old === undefined || old.files === null || this.#closed) return;
    let next: Entry;
    try {
      const { pair, mtimes } = await readPair(old.files.cert, old.files.key);
      if (pair.cert === old.pair.cert && pair.key === old.pair.key) {
        old.mtimes = mtimes;
        return;
      }
      next = this.#makeEntry(id, old.hosts, pair, old.isDefault, old.files, mtimes);
    } catch (err) {
      // Keep serving the old pair: a half-written file or a cert/key mismatch must not take HTTPS down.
      this.#logger.error('tls: a changed certificate could not be loaded; the previous one is still served', { cert: old.files.cert, key: old.files.key, error: errorMessage(err) });
      return;
    }
    if (this.#closed) return;
    this.#entries.set(id, next);
    this.#rebuild();
    this.#logger.info('tls: certificate reloaded', { cert: old.files.cert, hosts: next.hosts, notAfter: next.notAfter.toISOString() });
  }
}

async function mtimesOf(certFile: string, keyFile: string): Promise<string> {
  const [c, k] = await Promise.all([stat(certFile), stat(keyFile)]);
  return `${c.mtimeMs}:${c.size}:${k.mtimeMs}:${k.size}`;
}

async function readPair(certFile: string, keyFile: string): Promise<{ pair: KeyPair; mtimes: string }> {
  try {
    const mtimes = await mtimesOf(certFile, keyFile);
    const [cert, key] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
    return { pair: { cert, key }, mtimes };
  } catch (err) {
    throw new BatonError('TLS_CERT_UNREADABLE', `cannot read ${certFile} / ${keyFile}: ${errorMessage(err)}`);
  }
}
