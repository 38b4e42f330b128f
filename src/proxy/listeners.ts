// The TLS listeners (HTTPS, HTTP/2 by ALPN with HTTP/1.1 beside it) and what the
// plain listeners answer before routing when TLS is on (ACME HTTP-01
// challenges, the redirect to https://). Requests go through the same
// dispatch as plain HTTP: onRequest / onUpgrade with the same snapshot.

import { Buffer } from 'node:buffer';
import process from 'node:process';
import type * as http from 'node:http';
import type { IncomingMessage } from 'node:http';
import { nodeHttp } from '../core/node-http.ts';
import type * as http2 from 'node:http2';
import type * as https from 'node:https';
import net from 'node:net';
import type tls from 'node:tls';
import type { Duplex, Writable } from 'node:stream';
import { BatonResponse, type SnapshotRef } from './forwarder.ts';
import { onCheckContinue, onRequest, onUpgrade, HEALTH_PATH, type DispatchContext } from './dispatch.ts';
import { isWebSocketUpgrade } from './websocket.ts';
import { bindListener } from '../core/listen-fds.ts';
import { answerClientError, DEFAULT_REQUEST_LIMITS, type RequestLimits } from './limits.ts';
import type { Logger } from '../core/log.ts';
import type { AddressMatcher } from './cidr.ts';
import { clientOf, setClient, type ClientConnection } from './client.ts';
import { acceptProxyHeader } from './proxy-protocol.ts';
import { LeanConnections, type LeanListener } from './h1/connection.ts';

/** PEM texts of one certificate chain and its key. */
export interface KeyPair {
  cert: string;
  key: string;
}

/** Where a TLS listener gets its certificates (src/tls/certificates.ts implements it). */
export interface CertificateProvider {
  SNICallback(servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void;
  /** The pair served without SNI (or for an unknown name); null until one exists. */
  defaultPair(): KeyPair | null;
  /** Called whenever defaultPair() changes; returns an unsubscribe function. */
  onDefaultChange(listener: () => void): () => void;
}

export interface TlsListenerOptions {
  certificates: CertificateProvider;
  /** TLS protocol floor and TLS 1.2 cipher list (src/tls/certificates.ts). */
  minVersion: tls.SecureVersion;
  ciphers: string;
  /** Offer h2 by ALPN; HTTP/1.1 stays available either way (WebSockets use it). */
  http2: boolean;
  /** Add Strict-Transport-Security to every response (an app's own value wins). */
  hsts: boolean;
  /** A client that has not finished its TLS handshake by then is dropped. */
  handshakeTimeoutMs: number;
  maxConcurrentStreams: number;
  /** Open connections one client address may hold; beyond, new ones are closed at once. */
  maxConnectionsPerClient: number;
  /** Answer ACME TLS-ALPN-01 challenges (the acme-tls/1 protocol); null or absent: refused like any unknown protocol. */
  acmeTlsAlpn?: AcmeTlsAlpnResponder | null;
}

/** Where a TLS listener finds the challenge certificates of ACME's TLS-ALPN-01 (src/tls/acme.ts implements it). */
export interface AcmeTlsAlpnResponder {
  /** The challenge certificate's context for `servername` while a TLS-ALPN-01 challenge for it is pending. */
  challengeContext(servername: string): tls.SecureContext | undefined;
}

/** The ALPN protocol of ACME's TLS-ALPN-01 validation (RFC 8737). */
export const ACME_TLS_ALPN = 'acme-tls/1';

/** One year, the value HSTS preload lists ask for. */
export const HSTS_VALUE = 'max-age=31536000';
/** Largest header block an h2 client may send (the same bound as Node's HTTP/1.1 parser: 16 KiB). */
export const H2_MAX_HEADER_LIST_SIZE = 16 * 1024;
/** Memory one h2 session may hold in nghttp2 (MB) before new streams are refused. */
export const H2_MAX_SESSION_MEMORY_MB = 10;
/**
 * Rapid reset (CVE-2023-44487): streams a client may cancel in a burst, and per
 * second after it, before nghttp2 ends the session with GOAWAY ENHANCE_YOUR_CALM.
 */
export const H2_RESET_BURST = 100;
export const H2_RESET_RATE = 20;

/**
 * Most plaintext bytes handed to TLS in one write on an HTTP/1.1 connection (see paceTlsWrites).
 * Under OpenSSL's 16 KiB record, so that a write is one record in buffers of NodeBIO's usual 16 KiB.
 */
export const TLS_WRITE_SLICE = 4 * 1024;

type WriteCallback = (err?: Error | null) => void;
type WritevChunk = { chunk: Buffer | string; encoding: BufferEncoding };

/**
 * Bound what a TLS connection holds for a client that reads slowly.
 * Node's TLSWrap encrypts each write whole, into a buffer sized for it
 * (NodeBIO: 16 KiB, or the write's size plus record overhead above that),
 * holds it until the kernel took every byte, and keeps the two last buffers
 * for the connection's life. Writes are what the socket had buffered,
 * coalesced (writev: the response head with the first body chunk, undici's
 * 64 KiB chunks then, pipelined responses flushed at once), so a slow reader pinned
 * ~150 KiB of encrypted copies besides the plaintext (bench/RESULTS.md,
 * section 6). Here a large write goes out in slices of TLS_WRITE_SLICE, each
 * once the previous one is in the kernel; small writes (a whole small
 * response) still go as one. Stream backpressure is unchanged: the socket's
 * writableLength counts the whole chunk until its last slice is written.
 */
export function paceTlsWrites(socket: tls.TLSSocket): void {
  const s = socket as unknown as {
    _write(chunk: Buffer | string, encoding: BufferEncoding, cb: WriteCallback): void;
    _writev: ((chunks: WritevChunk[], cb: WriteCallback) => void) | null;
  };
  const write = s._write.bind(socket);
  const writev = s._writev?.bind(socket) ?? null;
  const sliced = (chunk: Buffer | string, encoding: BufferEncoding, cb: WriteCallback): void => {
    if (typeof chunk === 'string' ? chunk.length * 3 <= TLS_WRITE_SLICE : chunk.length <= TLS_WRITE_SLICE) {
      write(chunk, encoding, cb);
      return;
    }
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk;
    let offset = 0;
    const next = (err?: Error | null): void => {
      if (err) return cb(err);
      if (offset >= buf.length) return cb();
      const piece = buf.subarray(offset, offset + TLS_WRITE_SLICE);
      offset += piece.length;
      write(piece, 'buffer' as BufferEncoding, next);
    };
    next();
  };
  s._write = sliced;
  s._writev = (chunks, cb) => {
    let total = 0;
    for (const c of chunks) total += typeof c.chunk === 'string' ? Buffer.byteLength(c.chunk, c.encoding) : c.chunk.length;
    if (total <= TLS_WRITE_SLICE && writev !== null) {
      writev(chunks, cb);
      return;
    }
    let i = 0;
    const next = (err?: Error | null): void => {
      if (err) return cb(err);
      if (i >= chunks.length) return cb();
      const c = chunks[i++]!;
      sliced(c.chunk, c.encoding, next);
    };
    next();
  };
}

/**
 * Node copies the server's ALPN list into each connection's TLS options with
 * Buffer.from, which takes the 12 bytes from Buffer's shared pool, and the copy
 * lives as long as the connection. Since Node 24.x a pool slab is 64 KiB
 * (Buffer.poolSize, nodejs/node#63597) and the proxy allocates from the pool
 * between two accepts, so under a slow-read attack nearly every connection's
 * copy sat in a slab of its own that nothing else used any more: 64 KiB per
 * connection, 32 MB of 500 slow readers' 90 (bench/RESULTS.md, section 17).
 * Given an ArrayBufferView that is not a Uint8Array, Node copies the list into
 * an ArrayBuffer of its own of the list's size instead.
 */
export function alpnOutsideBufferPool(server: tls.Server): void {
  const s = server as unknown as { ALPNProtocols?: unknown };
  const list = s.ALPNProtocols;
  if (!(list instanceof Uint8Array)) return;
  const own = new ArrayBuffer(list.byteLength);
  new Uint8Array(own).set(list);
  s.ALPNProtocols = new DataView(own);
}

/**
 * The plaintext an HTTP/1.1 TLS connection, or an HTTP/2 stream, queues before
 * a response write says "wait" (Node's default: 16 KiB). Over plain HTTP the
 * kernel takes a slow reader's bytes (its send buffer grows to MBs on its own);
 * over TLS every byte is encrypted first, one slice at a time, and an HTTP/2
 * stream waits for its client's flow-control window, so the queue is what a
 * slow reader holds, in response chunks that each keep a slab of Node's buffer
 * pool (64 KiB) alive. At one slice the queue is about one chunk: 500 HTTP/1.1
 * slow readers +30 MB instead of +40 to +47 MB, 500 HTTP/2 streams +27 MB
 * instead of +42 MB (bench/RESULTS.md, section 17), with no measurable CPU cost on 256 MiB downloads.
 */
export const TLS_WRITE_HIGH_WATER_MARK = TLS_WRITE_SLICE;

/** Apply TLS_WRITE_HIGH_WATER_MARK to a connection's or stream's writable side (Node has no option for it on accepted sockets and streams). */
export function lowerWriteHighWaterMark(stream: Writable): void {
  (stream as unknown as { _writableState: { highWaterMark: number } })._writableState.highWaterMark = TLS_WRITE_HIGH_WATER_MARK;
}

/** A bound TLS listener, closed by the proxy. */
export interface TlsListener {
  readonly address: net.AddressInfo;
  /** Stop accepting; idle connections close; h2 sessions get GOAWAY and finish their streams. */
  close(): Promise<void>;
  /** Cut what is still open (after the proxy's close timeout). */
  closeAll(): void;
  /** The HTTP/1.1 parser's bound on a request head, for connections accepted from now on. */
  setMaxHeaderSize(bytes: number): void;
  /**
   * A successor holds the same listening socket: stop accepting here and leave
   * open connections alone (HTTP/1.1 ones get Connection: close on their next
   * response; h2 sessions get GOAWAY). Resolves once every connection is gone.
   */
  stopAccepting(): Promise<void>;
}

interface ProxyTimeouts {
  clientIdleTimeoutMs: number;
  headersTimeoutMs: number;
  limits?: RequestLimits;
}

type ResponseClass = new (...args: any[]) => { setHeader(name: string, value: string): unknown };

function withHsts<T extends ResponseClass>(Base: T): T {
  return class extends Base {
    constructor(...args: any[]) {
      super(...args);
      this.setHeader('strict-transport-security', HSTS_VALUE);
    }
  };
}

/** Who may speak for clients on a TLS listener (the proxy owns the trusted networks; a reload replaces them). */
export interface TlsClientPolicy {
  /** The trusted proxies now (null: none); each connection is judged by those at its accept. */
  trusted(): AddressMatcher | null;
  /** Every connection starts with a PROXY protocol header from a trusted proxy, before its TLS ClientHello. */
  proxyProtocol: boolean;
}

const IGNORE = (): void => undefined;

/**
 * Wait for a connection's first bytes (the start of its ClientHello) and leave
 * them in the socket's buffer, where the TLS socket wrapping it reads them
 * first (Node's initRead). Why: Node's TLS layer allocates a connection's
 * encrypted-input buffer at its first read and keeps it for the connection's
 * life, sized by that read: 64 KiB (libuv's suggestion) when TLS reads the
 * kernel itself, the first piece's size (1 KiB at least: handInPieces) when it is handed them
 * from JavaScript; once it exists, later reads fill it (and a 16 KiB one added
 * when a read fills it) instead of allocating 64 KiB. Measured inside the
 * daemon: 31.7 MB of 500 slow readers' malloc'd memory were these 64 KiB
 * buffers (bench/RESULTS.md, section 17). A connection that sends nothing
 * within `timeoutMs` is closed, as TLS's own handshake timeout would.
 */
function readFirstBytes(socket: net.Socket, timeoutMs: number, then: () => void): void {
  const finish = (): void => {
    socket.setTimeout(0);
    socket.off('data', onData);
    socket.off('end', drop);
    socket.off('error', drop);
    socket.off('timeout', drop);
  };
  const onData = (chunk: Buffer): void => {
    finish();
    socket.pause();
    socket.unshift(chunk);
    then();
  };
  const drop = (): void => {
    finish();
    socket.on('error', IGNORE);
    socket.destroy();
  };
  socket.setTimeout(timeoutMs);
  socket.on('data', onData);
  // After a PROXY header the socket was paused (its rest, if any, unshifted): read on.
  socket.resume();
  socket.once('end', drop);
  socket.once('error', drop);
  socket.once('timeout', drop);
}

/**
 * The size of the first encrypted-input buffer Node's TLS layer gives a
 * connection when it is handed bytes from JavaScript: the larger of this and
 * the first piece handed (NodeBIO's kInitialBufferLength).
 */
export const TLS_FIRST_INPUT_BUFFER = 1024;

/**
 * Make the TLSSocket about to wrap `socket` take the bytes already read (the
 * ClientHello, which readFirstBytes left in the socket's buffer) in pieces
 * smaller than TLS_FIRST_INPUT_BUFFER. Why: Node's TLS layer sizes a
 * connection's first encrypted-input buffer by the first piece it is handed
 * and, as soon as a piece fills its buffer, adds a 16 KiB one that the
 * connection keeps for its life (NodeBIO: the ring never shrinks below two
 * buffers). A ClientHello of 1 KiB or more (Node 24's and current browsers'
 * with a post-quantum key share: ~1.6 KB) handed whole is such a piece: 1.6 +
 * 16 KiB per connection, against 1 KiB handed in pieces (OpenSSL takes a
 * partial record into its own read buffer, so each piece leaves the buffer
 * empty). Node's initRead calls read() on the socket until it returns null;
 * until the buffer is empty each call returns one piece.
 */
function handInPieces(socket: net.Socket): void {
  if (socket.readableLength < TLS_FIRST_INPUT_BUFFER) return;
  // An own property over Socket.prototype.read, removed once the buffer is empty.
  const own = socket as unknown as { read?: (n?: number) => unknown };
  // Other callers (read(0) to start reading) get the usual answer.
  own.read = (n?: number): unknown => {
    const piece: unknown = net.Socket.prototype.read.call(socket, n ?? Math.min(socket.readableLength, TLS_FIRST_INPUT_BUFFER - 1));
    if (n === undefined && socket.readableLength === 0) delete own.read;
    return piece;
  };
}

/**
 * Decide who each accepted connection's client is before TLS sees a byte (as
 * the plain listeners do, proxy.ts): the TCP peer, or on a PROXY protocol
 * listener the client a trusted balancer's header names; then cap open
 * connections per client address (trusted proxies are not capped: each of
 * their connections carries many clients). The answer is kept on the TLS
 * socket the requests arrive on (clientOf). Returns every accepted socket
 * still open, so closing can cut those still in their handshake (or PROXY header) too.
 */
function identifyClients(server: tls.Server, max: number, policy: TlsClientPolicy, headerTimeoutMs: number, logger: Logger): Set<net.Socket> {
  // tls.Server's own connection handler (wrap in a TLSSocket) runs once the client is known and admitted.
  const tlsHandlers = server.listeners('connection') as ((socket: net.Socket) => void)[];
  server.removeAllListeners('connection');
  const open = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  const admit = (socket: net.Socket, address: string): boolean => {
    const n = (open.get(address) ?? 0) + 1;
    if (n > max) {
      // No TLS yet, so no way to say why: closed at once.
      socket.on('error', IGNORE);
      socket.destroy();
      return false;
    }
    open.set(address, n);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left <= 0) open.delete(address);
      else open.set(address, left);
    });
    return true;
  };
  const handOn = (socket: net.Socket, client: ClientConnection): void => {
    setClient(socket, client);
    handInPieces(socket);
    for (const h of tlsHandlers) h.call(server, socket);
  };
  // TLS takes the connection over once its first bytes are in JavaScript (readFirstBytes).
  const handOnAfterFirstBytes = (socket: net.Socket, client: ClientConnection): void => {
    if (socket.readableLength > 0) return handOn(socket, client);
    readFirstBytes(socket, headerTimeoutMs, () => handOn(socket, client));
  };
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const peer = socket.remoteAddress ?? '';
    const trusted = policy.trusted();
    const peerTrusted = trusted !== null && trusted.matches(peer);
    if (!policy.proxyProtocol) {
      if (!peerTrusted && !admit(socket, peer)) return;
      handOnAfterFirstBytes(socket, { address: peer, proto: 'https', trusted: peerTrusted });
      return;
    }
    if (!peerTrusted) {
      logger.warn('proxy: PROXY protocol connection from an untrusted peer closed (TLS listener)', { peer });
      socket.on('error', IGNORE);
      socket.destroy();
      return;
    }
    acceptProxyHeader(
      socket,
      headerTimeoutMs,
      (header, rest) => {
        const address = header.source ?? peer;
        // A header without an address (LOCAL: the balancer's own health check) is the balancer itself, not capped.
        if (header.source !== null && !admit(socket, address)) return;
        // The bytes after the header are the start of the ClientHello. Left in
        // the socket's own buffer (paused, so not emitted), they are what the
        // TLSSocket wrapping it reads first (Node's initRead), before anything newer from the kernel.
        socket.pause();
        if (rest.length > 0) socket.unshift(rest);
        // The balancer passed the client's bytes through: the client's own headers are trusted only if it is.
        handOnAfterFirstBytes(socket, { address, proto: 'https', trusted: trusted.matches(address) });
      },
      (reason) => logger.warn('proxy: connection without a valid PROXY header closed (TLS listener)', { peer, reason }),
    );
  });
  // Requests arrive on the TLS socket, not the TCP one: it inherits the client decided above.
  server.prependListener('secureConnection', (socket: tls.TLSSocket) => {
    const raw = (socket as unknown as { _parent?: net.Socket | null })._parent;
    if (raw !== undefined && raw !== null) setClient(socket, clientOf(raw));
  });
  return sockets;
}

/**
 * GOAWAY to a session that has had no open stream for `idleMs` (one opened
 * since then finishes first). Not session.setTimeout(): Node's timer outlives
 * the session (its clean-up clears it with setTimeout(0) only after flagging the
 * session destroyed, when that call does nothing), so every closed session
 * stayed in memory with its socket until the timer fired: ~7 KiB per h2
 * connection for the whole client idle timeout (test/integration/tls-h2-sessions.test.ts).
 */
function closeWhenIdle(session: http2.ServerHttp2Session, idleMs: number): void {
  const goaway = (): void => session.close();
  let open = 0;
  let timer: NodeJS.Timeout | undefined = setTimeout(goaway, idleMs).unref();
  const onStreamClose = (): void => {
    if (--open === 0 && !session.closed && !session.destroyed) timer = setTimeout(goaway, idleMs).unref();
  };
  session.on('stream', (stream: http2.ServerHttp2Stream) => {
    if (open++ === 0) clearTimeout(timer);
    stream.once('close', onStreamClose);
  });
  session.once('close', () => clearTimeout(timer));
}

// ---- ACME TLS-ALPN-01 (RFC 8737) ----

const kChallenge = Symbol('baton.acmeChallenge');
const kCertificateChosen = Symbol('baton.certificateChosen');
type ChallengeSocket = tls.TLSSocket & { [kChallenge]?: tls.SecureContext; [kCertificateChosen]?: true };

/**
 * The SNI callback of a listener that answers TLS-ALPN-01: the challenge
 * certificate for a connection whose ALPN callback chose acme-tls/1 (both are
 * called on the TLSSocket), the usual certificate otherwise.
 */
function challengeAwareSni(certs: CertificateProvider): (name: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) => void {
  return function (this: ChallengeSocket, name, cb) {
    const challenge = this[kChallenge];
    if (challenge !== undefined) return cb(null, challenge);
    this[kCertificateChosen] = true;
    certs.SNICallback(name, cb);
  };
}

/**
 * Offer acme-tls/1 beside h2/http/1.1, for names with a pending challenge only
 * (a client asking it for any other name gets the fatal no_application_protocol
 * alert, as for any protocol not offered), and end such a connection once its
 * handshake is done: the validator only looks at the certificate (RFC 8737 §3).
 * In TLS 1.3 OpenSSL asks for the protocol before the certificate, so the
 * certificate can follow the protocol; in TLS 1.2 it is the other way round,
 * and a validator limited to TLS 1.2 is refused rather than shown the wrong
 * certificate (Let's Encrypt's and pebble's validators speak TLS 1.3).
 */
function answerTlsAlpnChallenges(server: tls.Server, responder: AcmeTlsAlpnResponder, protocols: string[], logger: Logger): void {
  // The ALPN callback replaces the protocol list (Node takes one or the other); read per connection.
  const s = server as unknown as { ALPNProtocols: unknown; ALPNCallback: (this: ChallengeSocket, a: { servername: string; protocols: string[] }) => string | undefined };
  s.ALPNProtocols = undefined;
  s.ALPNCallback = function (this: ChallengeSocket, { servername, protocols: offered }) {
    if (offered.includes(ACME_TLS_ALPN)) {
      const challenge = servername ? responder.challengeContext(servername) : undefined;
      if (challenge === undefined || this[kCertificateChosen]) return undefined;
      this[kChallenge] = challenge;
      return ACME_TLS_ALPN;
    }
    // As Node's own selection from a list: the server's order of preference.
    return protocols.find((p) => offered.includes(p));
  };
  // HTTP (and HTTP/2's session setup) never see a validation connection.
  const handlers = server.listeners('secureConnection') as ((socket: tls.TLSSocket) => void)[];
  server.removeAllListeners('secureConnection');
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    if (socket.alpnProtocol === ACME_TLS_ALPN) {
      logger.info('acme: TLS-ALPN-01 challenge certificate shown', { host: (socket as { servername?: string }).servername, peer: socket.remoteAddress });
      socket.on('error', IGNORE);
      socket.end();
      return;
    }
    for (const h of handlers) h.call(server, socket);
  });
}

/**
 * HTTP/1.1 connections of a TLS listener start on baton's own path (src/proxy/h1/),
 * as on the plain listeners; node:http (or node:http2's HTTP/1.1 fallback)
 * takes those it hands over, h2 sessions and ACME's validation connections.
 */
function serveHttp1Lean(server: tls.Server, listener: Omit<LeanListener, 'handOff'>): LeanConnections {
  const nodeHandlers = server.listeners('secureConnection') as ((socket: net.Socket) => void)[];
  server.removeAllListeners('secureConnection');
  const handOff = (socket: net.Socket): void => {
    for (const h of nodeHandlers) h.call(server, socket);
  };
  const lean = new LeanConnections({ ...listener, handOff });
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    const alpn = socket.alpnProtocol;
    if (alpn === false || alpn === 'http/1.1') lean.accept(socket, null);
    else handOff(socket);
  });
  return lean;
}

/** Create and bind one TLS listener. */
export async function listenTls(
  ctx: DispatchContext,
  ref: SnapshotRef,
  timeouts: ProxyTimeouts,
  opts: TlsListenerOptions,
  policy: TlsClientPolicy,
  host: string,
  port: number,
  leanHttp1 = true,
): Promise<TlsListener> {
  const { clientIdleTimeoutMs, headersTimeoutMs } = timeouts;
  const certs = opts.certificates;
  const pair = certs.defaultPair();
  const secure: tls.TlsOptions = {
    SNICallback: opts.acmeTlsAlpn ? challengeAwareSni(certs) : (name, cb) => certs.SNICallback(name, cb),
    minVersion: opts.minVersion,
    ciphers: opts.ciphers,
    handshakeTimeout: opts.handshakeTimeoutMs,
    // On the TCP sockets themselves (HTTP/2 sessions too, not only the HTTP/1.1 fallback): without it
    // Nagle holds small h2 frames back for the peer's delayed ACK, ~40 ms per exchange.
    noDelay: true,
    ...(pair === null ? {} : { cert: pair.cert, key: pair.key }),
  };
  const h1 = {
    ServerResponse: opts.hsts ? withHsts(BatonResponse) : BatonResponse,
    keepAliveTimeout: clientIdleTimeoutMs,
    headersTimeout: headersTimeoutMs,
    requestTimeout: 0,
    connectionsCheckingInterval: Math.max(100, Math.min(1000, headersTimeoutMs)),
    noDelay: true,
    maxHeaderSize: (timeouts.limits ?? DEFAULT_REQUEST_LIMITS).maxHeaderSize,
  };
  const handler = (req: IncomingMessage, res: BatonResponse): void => onRequest(ctx, ref, req, res);
  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => onUpgrade(ctx, ref, req, socket as net.Socket, head);

  let server: tls.Server;
  const sessions = new Set<http2.ServerHttp2Session>();
  if (opts.http2) {
    // Loaded here, not at start: a daemon without TLS never loads node:tls, node:https or node:http2 (2-6 MB).
    const { H2Request, H2Response } = await import('./h2.ts');
    const s = process.getBuiltinModule('node:http2').createSecureServer({
      ...secure,
      allowHTTP1: true,
      http1Options: h1 as never,
      Http2ServerRequest: H2Request as unknown as typeof http2.Http2ServerRequest,
      Http2ServerResponse: (opts.hsts ? withHsts(H2Response) : H2Response) as unknown as typeof http2.Http2ServerResponse,
      settings: { maxConcurrentStreams: opts.maxConcurrentStreams, maxHeaderListSize: H2_MAX_HEADER_LIST_SIZE },
      maxSessionMemory: H2_MAX_SESSION_MEMORY_MB,
      // nghttp2's own rapid-reset limiter (Node passes these through; defaults 1000 / 33).
      ...({ streamResetBurst: H2_RESET_BURST, streamResetRate: H2_RESET_RATE } as object),
    });
    // Node's default upgrades on any listener; baton tunnels WebSockets only (as on plain listeners).
    (s as unknown as { shouldUpgradeCallback: (req: IncomingMessage) => boolean }).shouldUpgradeCallback = isWebSocketUpgrade;
    s.on('request', handler as never);
    s.on('upgrade', upgrade);
    s.on('session', (session: http2.ServerHttp2Session) => {
      sessions.add(session);
      session.once('close', () => sessions.delete(session));
      closeWhenIdle(session, clientIdleTimeoutMs);
      session.on('error', () => undefined);
      session.on('stream', lowerWriteHighWaterMark);
    });
    server = s;
  } else {
    const s = process.getBuiltinModule('node:https').createServer({ ...secure, ...h1, shouldUpgradeCallback: isWebSocketUpgrade } as https.ServerOptions<typeof IncomingMessage, typeof BatonResponse>, handler);
    s.on('upgrade', upgrade);
    server = s;
  }
  alpnOutsideBufferPool(server);
  if (opts.acmeTlsAlpn) answerTlsAlpnChallenges(server, opts.acmeTlsAlpn, opts.http2 ? ['h2', 'http/1.1'] : ['http/1.1'], ctx.logger);
  const tlsServer = server;
  const lean = leanHttp1
    ? serveHttp1Lean(server, {
        ref,
        limits: () => ctx.limits,
        closing: () => ctx.closing || !tlsServer.listening,
        bypass: () => false,
        accessLog: () => ctx.accessLog,
        extraLines: opts.hsts ? `strict-transport-security: ${HSTS_VALUE}\r\n` : '',
        timeouts: () => timeouts,
      })
    : null;
  const accepted = identifyClients(server, opts.maxConnectionsPerClient, policy, opts.handshakeTimeoutMs, ctx.logger);
  // Expect: 100-continue: a body declared over the service's limit gets its 413 instead of 100 (dispatch.ts).
  server.on('checkContinue', ((req: IncomingMessage, res: BatonResponse) => onCheckContinue(ref, req, res, handler)) as never);
  // HTTP/1.1 on this listener: every header field kept and counted, baton's pages for malformed heads (as on plain listeners).
  (server as unknown as { maxHeadersCount: number }).maxHeadersCount = 0;
  server.on('clientError', answerClientError);
  // HTTP/1.1 connections only: an h2 session writes from nghttp2 straight into TLSWrap, not through these.
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    if (socket.alpnProtocol !== 'h2') {
      paceTlsWrites(socket);
      lowerWriteHighWaterMark(socket);
    }
  });
  // A failed handshake (scanner, wrong name, timeout) is the client's business, not a daemon error.
  server.on('tlsClientError', (_err: Error, socket: tls.TLSSocket) => socket.destroy());
  const unsubscribe = certs.onDefaultChange(() => {
    const p = certs.defaultPair();
    if (p !== null) server.setSecureContext({ minVersion: opts.minVersion, ciphers: opts.ciphers, cert: p.cert, key: p.key });
  });

  try {
    await bindListener(server, 'tls', host, port);
  } catch (err) {
    unsubscribe();
    throw err;
  }
  // An error while listening (accept failing with EMFILE) must not take the daemon down: log it, keep serving.
  server.on('error', (err: Error) => ctx.logger.error('proxy: TLS listener error', { host, port, error: err.message }));

  const h1Server = server as unknown as http.Server;
  return {
    address: server.address() as net.AddressInfo,
    close: () => {
      unsubscribe();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // The http2 server's close() already closes idle HTTP/1.1 connections and sends GOAWAY to sessions.
      if (!opts.http2) h1Server.closeIdleConnections();
      lean?.closeIdle();
      return closed;
    },
    closeAll: () => {
      nodeHttp.Server.prototype.closeAllConnections.call(h1Server);
      lean?.closeAll();
      for (const s of sessions) s.destroy();
      // What is left: connections still in (or stuck before) their TLS handshake.
      for (const s of accepted) s.destroy();
    },
    setMaxHeaderSize: (bytes: number) => {
      (server as unknown as { maxHeaderSize: number }).maxHeaderSize = bytes;
    },
    stopAccepting: () => {
      unsubscribe();
      return stopAccepting(server, () => {
        for (const s of sessions) s.close();
      });
    },
  };
}

/**
 * Close only the listening handle of `server` (its copy of the socket: a
 * successor may hold the same one), not its idle keep-alive connections as
 * http.Server#close() does: a client may be sending a request on one at that
 * very moment. Resolves once the last connection is gone.
 */
export function stopAccepting(server: net.Server, also?: () => void): Promise<void> {
  const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
  // net.Server's own close: the handle only (http/https/http2 servers add closing idle connections).
  net.Server.prototype.close.call(server);
  also?.();
  return closed;
}

// ---- the plain listeners' front door when TLS is on ----

export const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

export interface PlainFront {
  /** Port of the HTTPS listener to redirect to; null = no redirect. */
  redirectPort: number | null;
  /** The key authorization for an HTTP-01 token, if one is pending. */
  challenge: ((token: string) => string | undefined) | null;
}

const HOST_ONLY = /^(?:\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::\d{1,5})?$/i;

/** Answer an ACME challenge or redirect to HTTPS; false when the request goes on to routing. */
export function answerPlainFront(front: PlainFront, req: IncomingMessage, res: BatonResponse): boolean {
  const url = req.url ?? '/';
  if (front.challenge !== null && url.startsWith(ACME_CHALLENGE_PREFIX)) {
    const token = url.slice(ACME_CHALLENGE_PREFIX.length);
    const answer = /^[A-Za-z0-9_-]+$/.test(token) ? front.challenge(token) : undefined;
    if (answer === undefined) return false; // not ours: maybe the app answers its own
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': Buffer.byteLength(answer), 'cache-control': 'no-store' });
    res.end(answer);
    return true;
  }
  if (front.redirectPort === null || url === HEALTH_PATH || url.startsWith(ACME_CHALLENGE_PREFIX) || !url.startsWith('/')) return false;
  const host = req.headers.host;
  if (host === undefined || !HOST_ONLY.test(host)) return false; // routing answers what it answers to a bad Host
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.split(':')[0]!;
  const port = front.redirectPort === 443 ? '' : `:${front.redirectPort}`;
  const location = `https://${name.toLowerCase()}${port}${url}`;
  res.writeHead(308, { 'location': location, 'content-length': 0, 'cache-control': 'no-store' });
  res.end();
  return true;
}
