// What happens to a request (or WebSocket upgrade) before it is forwarded: baton's own endpoints
// (/_baton/health, /_baton/beta), routing by Host, maintenance, pause (hold, release, expiry).

import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import type { IncomingMessage } from 'node:http';
import type net from 'node:net';
import type { Logger } from '../core/log.ts';
import { forward, type BatonResponse, type SnapshotRef } from './forwarder.ts';
import { errorStatus, rawErrorResponse, rawMaintenanceResponse, sendErrorPage, sendMaintenancePage, sendText, type ProxyErrorCode } from './error-page.ts';
import { openTunnel } from './websocket.ts';
import { normaliseAbsoluteForm } from './request-target.ts';
import { declaredBodyOver, headOverLimit, lingerOnClose, type RequestLimits } from './limits.ts';
import { clientAddress } from './client.ts';
import { COOKIE_MAX_AGE_S, setCookieHeader } from './sticky.ts';
import type { HeldRequest, PauseQueue } from './pause-queue.ts';
import type { CanaryRoute, ServiceRoute, ServiceShared } from './snapshot.ts';
import type { BetaTokenLedger, PauseSpec, RoutingCounters } from './types.ts';
import { noteUpgradeStatus, type AccessLog } from './access-log.ts';

/** Proxy-wide state the dispatch reads. */
export interface DispatchContext {
  readonly logger: Logger;
  /** What /_baton/health answers: 200 ok, or 503 draining. */
  hostHealthy: boolean;
  /** The proxy is closing: responses carry Connection: close. */
  closing: boolean;
  /** Which beta link tokens were used already. */
  readonly betaTokens: BetaTokenLedger;
  /** Bounds of a request head (URL length, header fields); replaced by a reload. */
  limits: RequestLimits;
  /** proxy.access_log, or null (off: no cost per request). */
  accessLog: AccessLog | null;
}

export const HEALTH_PATH = '/_baton/health';
export const BETA_PATH = '/_baton/beta';
/** Bytes a held upgrade's client may send before the pause ends. */
const HELD_UPGRADE_MAX_BYTES = 64 * 1024;
const EMPTY = Buffer.alloc(0);

function noop(): void {}

// ---- HTTP requests ----

/** The server's 'request' handler. */
export function onRequest(ctx: DispatchContext, ref: SnapshotRef, req: IncomingMessage, res: BatonResponse): void {
  // A pipelined request waits until the responses before it are sent (Node queues its response until
  // then): started at once, each would hold a body read from the instance for a client that has not
  // read the first one (three per connection under slowhttptest -k 3), as nginx and HAProxy never do.
  if (res.socket === null) {
    res.once('socket', () => onRequest(ctx, ref, req, res));
    return;
  }
  const start = performance.now();
  if (ctx.accessLog !== null) ctx.accessLog.request(req, res, ref, start);
  if (ctx.closing) res.shouldKeepAlive = false;
  const over = headOverLimit(req, ctx.limits);
  if (over !== null) {
    // Refused before routing: no service counts it, no instance sees it; a body it may carry is not read.
    sendErrorPage(res, over, req.headers.accept, true);
    return;
  }
  // Absolute-form ("GET http://host/ HTTP/1.1"): its authority is the host, for routing and for the app.
  if (req.url !== undefined && req.url.charCodeAt(0) !== 47 /* / */ && !normaliseAbsoluteForm(req)) {
    sendErrorPage(res, 'bad_request', req.headers.accept, false);
    return;
  }
  const url = req.url;
  // One character test keeps baton's endpoints off the cost of ordinary requests.
  if (url !== undefined && url.length >= 12 && url.charCodeAt(1) === 95 && url.startsWith('/_baton/') && batonEndpoint(ctx, ref, req, res, url)) return;
  routeRequest(ref, req, res, start);
}

/** Route by Host through the current snapshot; maintenance and pause first when on. */
export function routeRequest(ref: SnapshotRef, req: IncomingMessage, res: BatonResponse, start: number): void {
  const route = ref.current.route(req.headers.host);
  if (route === null) {
    sendErrorPage(res, 'no_route', req.headers.accept, false);
    return;
  }
  if (answeredBeforeInstance(route, req, res, ref, start)) return;
  const cap = route.inflightCap;
  if (cap !== null) route.shared.admission.admit(route, cap, req, res, ref, start);
  else forward(req, res, route, ref, start);
}

/**
 * What the service's route answers before any instance may see the request:
 * a body declared over its limit (413), maintenance, a pause (held). True when
 * the request was taken care of. Run on arrival, and again when a request that
 * waited for a slot under the in-flight cap is admitted (admission.ts): the
 * route may have been paused or put under maintenance meanwhile.
 */
export function answeredBeforeInstance(route: ServiceRoute, req: IncomingMessage, res: BatonResponse, ref: SnapshotRef, start: number): boolean {
  if (route.maxBodyBytes !== null && declaredBodyOver(req, route.maxBodyBytes)) {
    refuseBody(route, req, res, start);
    return true;
  }
  return route.gated && gateRequest(route, req, res, ref, start);
}

/**
 * 413 for a body declared over the service's limit, before a byte of it is
 * read (with Expect: 100-continue, before the client sends it): the client's
 * answer, not a failure of baton's. The connection closes after it.
 */
function refuseBody(route: ServiceRoute, req: IncomingMessage, res: BatonResponse, start: number): void {
  route.counters.requests++;
  route.shared.noRelease.batonAnswer(413, performance.now() - start);
  lingerOnClose(req.httpVersionMajor === 2 ? null : req.socket);
  sendErrorPage(res, 'body_too_large', req.headers.accept, true);
}

/**
 * The 'checkContinue' listener: the client waits for 100 Continue before it
 * sends its body. A body declared over the service's limit gets the 413 at
 * once instead (no 100, so the body is never sent); every other request gets
 * its 100 Continue and goes on as usual (Node's default).
 */
export function onCheckContinue(ref: SnapshotRef, req: IncomingMessage, res: BatonResponse, handler: (req: IncomingMessage, res: BatonResponse) => void): void {
  const route = ref.current.route(req.headers.host);
  if (route === null || route.maxBodyBytes === null || !declaredBodyOver(req, route.maxBodyBytes)) res.writeContinue();
  handler(req, res);
}

/** A request of the service answered 503 by baton before reaching any release: a pause that overflowed or expired. */
function refused(shared: ServiceShared, start: number): void {
  const c = shared.counters;
  c.requests++;
  c.failed++;
  shared.noRelease.batonAnswer(503, performance.now() - start);
}

/** A request answered with the maintenance page: on purpose, so not a failure. */
function underMaintenance(shared: ServiceShared, start: number): void {
  shared.counters.requests++;
  shared.routing.maintenance++;
  shared.noRelease.respond(503, performance.now() - start);
}

/** Maintenance page or hold; true when the request was taken care of. */
function gateRequest(route: ServiceRoute, req: IncomingMessage, res: BatonResponse, ref: SnapshotRef, start: number): boolean {
  const m = route.maintenance;
  if (m !== null && (m.allow === null || !m.allow.matches(clientAddress(req.socket)))) {
    underMaintenance(route.shared, start);
    sendMaintenancePage(res, m.html, m.retryAfter);
    return true;
  }
  const p = route.pause;
  if (p === null) return false;
  const { queue, routing } = route.shared;
  if (queue.size >= p.maxQueued) {
    routing.overflowed++;
    refused(route.shared, start);
    sendErrorPage(res, 'paused', req.headers.accept, false);
    return true;
  }
  const item: HeldRequest = { req, res, socket: null, head: EMPTY, start, ref, timer: null, onGone: noop, onData: null };
  item.onGone = () => {
    if (!queue.delete(item)) return;
    clearTimeout(item.timer!);
    routing.abandoned++;
    route.counters.requests++;
    route.shared.noRelease.abandoned();
  };
  item.timer = setTimeout(() => {
    if (!queue.delete(item)) return;
    res.off('close', item.onGone);
    routing.expired++;
    refused(route.shared, start);
    sendErrorPage(res, 'paused', req.headers.accept, false);
  }, p.maxWaitMs);
  res.once('close', item.onGone);
  hold(queue, routing, item);
  return true;
}

function hold(queue: PauseQueue, routing: RoutingCounters, item: HeldRequest): void {
  queue.add(item);
  routing.held++;
}

// ---- baton's endpoints ----

/** /_baton/health and /_baton/beta; false for any other path (it goes to the app). */
function batonEndpoint(ctx: DispatchContext, ref: SnapshotRef, req: IncomingMessage, res: BatonResponse, url: string): boolean {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (path === HEALTH_PATH) {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendText(res, 405, 'method not allowed', { allow: 'GET, HEAD' });
    } else if (ctx.hostHealthy) {
      sendText(res, 200, 'ok');
    } else {
      sendText(res, 503, 'draining');
    }
    return true;
  }
  if (path === BETA_PATH) {
    const route = ref.current.route(req.headers.host);
    const c = route?.canary ?? null;
    // Only a service running a canary with beta testers owns this path; elsewhere it is the app's.
    if (route === null || c === null || c.betaCookie === null) return false;
    betaLink(ctx, route, c, req, res, q < 0 ? '' : url.slice(q + 1));
    return true;
  }
  return false;
}

/** A ledger in memory, for a proxy used without a store: "once" lasts as long as the process. */
export class MemoryBetaTokenLedger implements BetaTokenLedger {
  readonly #used = new Map<string, number>();

  claim(id: string, expiresAt: number): boolean {
    if (this.#used.has(id)) return false;
    // Forget used tokens once they have expired (they are refused as expired from then on).
    if (this.#used.size >= 1024 && (this.#used.size & 1023) === 0) {
      const now = Date.now();
      for (const [used, exp] of this.#used) if (exp <= now) this.#used.delete(used);
    }
    this.#used.set(id, expiresAt);
    return true;
  }
}

function betaLink(ctx: DispatchContext, route: ServiceRoute, c: CanaryRoute, req: IncomingMessage, res: BatonResponse, query: string): void {
  const routing = route.shared.routing;
  if (req.method !== 'GET') {
    // A HEAD (link preview) must not use up the link.
    sendText(res, 405, 'method not allowed', { allow: 'GET' });
    return;
  }
  const now = Date.now();
  const token = new URLSearchParams(query).get('token');
  const t = token === null ? null : c.signer.tokenOf(token);
  if (t === null || t.expiresAt <= now || !ctx.betaTokens.claim(t.id, t.expiresAt)) {
    routing.betaLinksRefused++;
    sendErrorPage(res, 'beta_link_invalid', req.headers.accept, false);
    return;
  }
  routing.betaLinksAccepted++;
  const cookie = setCookieHeader(c.betaCookie!, c.signer.betaCookie(t.id, now + COOKIE_MAX_AGE_S * 1000));
  res.writeHead(302, { 'location': '/', 'set-cookie': cookie, 'cache-control': 'no-store', 'content-length': 0 });
  res.end();
}

// ---- WebSocket upgrades ----

/** The server's 'upgrade' handler. */
export function onUpgrade(ctx: DispatchContext, ref: SnapshotRef, req: IncomingMessage, socket: net.Socket, head: Buffer): void {
  const start = performance.now();
  socket.on('error', noop); // a reset client surfaces as 'close'
  if (ctx.accessLog !== null) ctx.accessLog.upgrade(req, socket, ref, start);
  const over = headOverLimit(req, ctx.limits);
  if (over !== null) {
    refuseUpgrade(socket, over);
    return;
  }
  if (req.url !== undefined && req.url.charCodeAt(0) !== 47 /* / */ && !normaliseAbsoluteForm(req)) {
    refuseUpgrade(socket, 'bad_request');
    return;
  }
  routeUpgrade(ctx.logger, ref, req, socket, head, start);
}

export function routeUpgrade(logger: Logger, ref: SnapshotRef, req: IncomingMessage, client: net.Socket, head: Buffer, start: number): void {
  const route = ref.current.route(req.headers.host);
  if (route === null) {
    refuseUpgrade(client, 'no_route');
    return;
  }
  if (route.gated) {
    const m = route.maintenance;
    if (m !== null && (m.allow === null || !m.allow.matches(clientAddress(client)))) {
      route.shared.routing.maintenance++;
      route.shared.noRelease.respond(503, performance.now() - start);
      noteUpgradeStatus(client, 503, 'maintenance');
      client.end(rawMaintenanceResponse(m.html, m.retryAfter));
      return;
    }
    if (route.pause !== null) {
      holdUpgrade(route, route.pause, req, client, head, ref, start);
      return;
    }
  }
  openTunnel(req, client, head, route, ref, logger, start);
}

function holdUpgrade(route: ServiceRoute, p: PauseSpec, req: IncomingMessage, client: net.Socket, head: Buffer, ref: SnapshotRef, start: number): void {
  const { queue, routing, noRelease } = route.shared;
  if (queue.size >= p.maxQueued) {
    routing.overflowed++;
    noRelease.batonAnswer(503, performance.now() - start);
    refuseUpgrade(client, 'paused');
    return;
  }
  const item: HeldRequest = { req, res: null, socket: client, head, start, ref, timer: null, onGone: noop, onData: null };
  const detach = (): void => {
    client.off('data', item.onData!);
    client.off('end', item.onGone);
    client.off('close', item.onGone);
  };
  item.onGone = () => {
    if (!queue.delete(item)) return;
    clearTimeout(item.timer!);
    detach();
    client.destroy();
    routing.abandoned++;
    noRelease.abandoned();
  };
  item.onData = (chunk: Buffer) => {
    item.head = Buffer.concat([item.head, chunk]);
    if (item.head.length > HELD_UPGRADE_MAX_BYTES) item.onGone();
  };
  item.timer = setTimeout(() => {
    if (!queue.delete(item)) return;
    detach();
    routing.expired++;
    noRelease.batonAnswer(503, performance.now() - start);
    refuseUpgrade(client, 'paused');
  }, p.maxWaitMs);
  // Reading keeps a client's departure visible (end/close) while it waits.
  client.on('data', item.onData);
  client.once('end', item.onGone);
  client.once('close', item.onGone);
  hold(queue, routing, item);
}

/** baton's answer to an upgrade it does not forward (noted for the access log). */
function refuseUpgrade(socket: net.Socket, code: ProxyErrorCode): void {
  noteUpgradeStatus(socket, errorStatus(code), code);
  socket.end(rawErrorResponse(code));
}

// ---- the end of a pause ----

/** Forward every held request, oldest first, through the current snapshot. */
export function releaseHeld(logger: Logger, queue: PauseQueue, routing: RoutingCounters): void {
  for (const item of queue.takeAll()) {
    clearTimeout(item.timer!);
    routing.released++;
    try {
      if (item.res !== null) {
        item.res.off('close', item.onGone);
        routeRequest(item.ref, item.req, item.res, item.start);
      } else {
        const client = item.socket!;
        client.off('data', item.onData!);
        client.off('end', item.onGone);
        client.off('close', item.onGone);
        client.pause();
        routeUpgrade(logger, item.ref, item.req, client, item.head, item.start);
      }
    } catch (err) {
      logger.error('proxy: a released request failed', { error: err instanceof Error ? err.message : String(err) });
      item.res?.destroy();
      item.socket?.destroy();
    }
  }
}

/** Answer every held request 503 now (the proxy is closing). */
export function refuseHeld(shared: ServiceShared): void {
  for (const item of shared.queue.takeAll()) {
    clearTimeout(item.timer!);
    shared.routing.expired++;
    if (item.res !== null) {
      item.res.off('close', item.onGone);
      refused(shared, item.start);
      sendErrorPage(item.res, 'paused', item.req.headers.accept, false);
    } else {
      const client = item.socket!;
      client.off('data', item.onData!);
      client.off('end', item.onGone);
      client.off('close', item.onGone);
      shared.noRelease.batonAnswer(503, performance.now() - item.start);
      refuseUpgrade(client, 'paused');
    }
  }
}
