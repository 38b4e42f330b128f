// A service's cap on requests in flight (limits.max_inflight) and the short
// queue in front of it, as HAProxy's maxconn, maxqueue and timeout queue:
// a request beyond the cap waits, oldest first, for a slot; beyond the queue,
// or after queue_timeout, it is shed with 503 and Retry-After. Shedding is its
// own outcome in the service's counters (routing: queued, shed, queueTimeouts),
// not a failure of baton's: the operator set the cap.
//
// A waiting request holds its connection and nothing more: its body is not
// read (its socket is paused: at most the one read that brought the head, 64
// KiB, is held; HTTP/2 flow control does the same per stream), so a full
// queue of 100 costs a few MB at worst. WebSocket upgrades are not counted:
// they are tunnels, not requests in flight. baton's own HTTP/1.1 path takes a
// free slot at once (tryEnter); a request that would wait goes to node:http's
// path, which queues it here.

import { performance } from 'node:perf_hooks';
import type { IncomingMessage } from 'node:http';
import { forward, type BatonResponse, type SnapshotRef } from './forwarder.ts';
import { sendErrorPage } from './error-page.ts';
import { answeredBeforeInstance } from './dispatch.ts';
import type { ServiceRoute } from './snapshot.ts';
import type { ServiceLimits } from '../config/types.ts';
import type { RoutingCounters } from './types.ts';

/** The cap as the hot path reads it (from the service's limits; null = no cap). */
export interface InflightCap {
  readonly maxInflight: number;
  readonly maxQueued: number;
  readonly queueTimeoutMs: number;
}

export function inflightCap(limits: ServiceLimits | null | undefined): InflightCap | null {
  if (limits == null || limits.maxInflight == null) return null;
  return { maxInflight: limits.maxInflight, maxQueued: limits.maxQueued, queueTimeoutMs: limits.queueTimeoutMs };
}

/** A request waiting for a slot. */
interface Waiting {
  readonly req: IncomingMessage;
  readonly res: BatonResponse;
  readonly start: number;
  readonly ref: SnapshotRef;
  readonly service: string;
  timer: NodeJS.Timeout | null;
  onGone: () => void;
}

/** One service's requests in flight under its cap, and those waiting (shared by every snapshot). */
export class Admission {
  /** Requests admitted under the cap and not finished yet. */
  #inflight = 0;
  // A Set keeps insertion order and removes from the middle in O(1).
  readonly #waiting = new Set<Waiting>();
  #cap: InflightCap | null = null;
  /** Set by refuseAll(): the proxy is closing, no request waits any more. */
  #closing = false;

  get inflight(): number {
    return this.#inflight;
  }

  get queued(): number {
    return this.#waiting.size;
  }

  /**
   * The cap of the snapshot just applied. A raised cap (or none) admits
   * waiting requests at once; a lowered one lets those in flight finish.
   * Requests admitted while there was no cap are not counted.
   */
  configure(cap: InflightCap | null): void {
    this.#cap = cap;
    this.#pump();
  }

  /** Forward now under the cap, queue, or shed; `route` carries the cap of the current snapshot. */
  admit(route: ServiceRoute, cap: InflightCap, req: IncomingMessage, res: BatonResponse, ref: SnapshotRef, start: number): void {
    this.#cap = cap;
    if (this.#inflight < cap.maxInflight && this.#waiting.size === 0) {
      this.#enter(res);
      forward(req, res, route, ref, start);
      return;
    }
    const routing = route.shared.routing;
    // Closing: nothing will free a slot in time, so a request whose head
    // arrived after refuseAll() is answered now rather than at queue_timeout.
    if (this.#closing || this.#waiting.size >= cap.maxQueued) {
      shed(route, req, res, start);
      return;
    }
    const item: Waiting = { req, res, start, ref, service: route.name, timer: null, onGone: noop };
    item.onGone = () => {
      if (!this.#waiting.delete(item)) return;
      clearTimeout(item.timer!);
      routing.abandoned++;
      route.counters.requests++;
      route.shared.noRelease.abandoned();
    };
    item.timer = setTimeout(() => {
      if (!this.#waiting.delete(item)) return;
      res.off('close', item.onGone);
      routing.queueTimeouts++;
      shed(route, req, res, start);
    }, cap.queueTimeoutMs);
    res.once('close', item.onGone);
    this.#waiting.add(item);
    routing.queued++;
    // Read no more of its body while it waits: what the socket's last read brought stays (Node
    // reads on by itself up to the request's 64 KiB buffer otherwise). Reading the body (forwarding,
    // or Node discarding it after a 503) resumes the socket. An HTTP/2 stream has its own flow control
    // (its socket is the whole session's), and a request without a body is left alone. The price: a
    // paused client that leaves is noticed only once admitted (or at queue_timeout), not while it waits.
    if (req.httpVersionMajor === 1 && !req.complete) req.socket.pause();
  }

  /**
   * A slot at once, for a request of baton's own HTTP/1.1 path (src/proxy/h1/);
   * null when the cap is reached or requests wait (that request then goes to
   * node:http's path, which queues or sheds it here). The function returned
   * frees the slot (once, whatever the number of calls).
   */
  tryEnter(cap: InflightCap): (() => void) | null {
    this.#cap = cap;
    if (this.#closing || this.#inflight >= cap.maxInflight || this.#waiting.size > 0) return null;
    this.#inflight++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.#leave();
    };
  }

  /** Answer every waiting request 503 now, and every one beyond the cap from now on (the proxy is closing). */
  refuseAll(route: (service: string) => ServiceRoute | undefined): void {
    this.#closing = true;
    for (const item of [...this.#waiting]) {
      this.#waiting.delete(item);
      clearTimeout(item.timer!);
      item.res.off('close', item.onGone);
      const r = route(item.service);
      if (r !== undefined) shed(r, item.req, item.res, item.start);
      else sendErrorPage(item.res, 'at_capacity', item.req.headers.accept, false);
    }
  }

  #enter(res: BatonResponse): void {
    this.#inflight++;
    res.once('close', this.#leave);
  }

  readonly #leave = (): void => {
    this.#inflight--;
    this.#pump();
  };

  /** Admit waiting requests, oldest first, while there is room (all of them when there is no cap any more). */
  #pump(): void {
    for (const item of this.#waiting) {
      const cap = this.#cap;
      if (cap !== null && this.#inflight >= cap.maxInflight) return;
      this.#waiting.delete(item);
      clearTimeout(item.timer!);
      item.res.off('close', item.onGone);
      // Where the service's traffic goes now (the snapshot may have changed while it waited).
      const route = item.ref.current.services.get(item.service);
      if (route === undefined) {
        sendErrorPage(item.res, 'no_route', item.req.headers.accept, false);
        continue;
      }
      // Paused or under maintenance since it came (or its body is over a lowered limit): the gate answers
      // or holds it (a held one comes back here once the pause ends), never the instance.
      if (answeredBeforeInstance(route, item.req, item.res, item.ref, item.start)) continue;
      if (cap !== null) this.#enter(item.res);
      forward(item.req, item.res, route, item.ref, item.start);
    }
  }
}

function noop(): void {}

/** 503 with Retry-After: over the cap and the queue is full, or the wait passed queue_timeout. */
function shed(route: ServiceRoute, req: IncomingMessage, res: BatonResponse, start: number): void {
  route.counters.requests++;
  route.shared.routing.shed++;
  // A 5xx response of baton's, on purpose: not counted as a failure (the cap is the operator's).
  route.shared.noRelease.respond(503, performance.now() - start);
  sendErrorPage(res, 'at_capacity', req.headers.accept, false);
}

function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Prometheus families of the in-flight caps, per service: requests shed (by reason) and waiting now. */
export function renderShedding(rows: readonly { service: string; routing: RoutingCounters; queued: number }[]): string {
  const out = [
    '# HELP baton_shed_requests_total Requests answered 503 by a service\'s in-flight cap (limits.max_inflight): its queue was full, or they waited limits.queue_timeout.',
    '# TYPE baton_shed_requests_total counter',
  ];
  for (const r of rows) {
    const s = label(r.service);
    out.push(`baton_shed_requests_total{service="${s}",reason="queue_full"} ${r.routing.shed - r.routing.queueTimeouts}`);
    out.push(`baton_shed_requests_total{service="${s}",reason="queue_timeout"} ${r.routing.queueTimeouts}`);
  }
  out.push('# HELP baton_queued_requests Requests waiting now for a slot under a service\'s in-flight cap.', '# TYPE baton_queued_requests gauge');
  for (const r of rows) out.push(`baton_queued_requests{service="${label(r.service)}"} ${r.queued}`);
  return out.join('\n') + '\n';
}
