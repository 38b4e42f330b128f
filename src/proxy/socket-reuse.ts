// Tells a request whether undici wrote it on a fresh or a reused keep-alive connection.
//
// undici does not expose the socket to a dispatch handler, but it publishes
// 'undici:client:sendHeaders' ({ request, headers, socket }) on
// diagnostics_channel right before writing a request head. We count heads per
// socket (WeakMap, so closed sockets are collected).
//
// To attribute a publication to one of our requests: in undici's HTTP/1.1
// writer, handler.onRequestStart() and the sendHeaders publication happen in
// the same synchronous block (client-h1.js writeH1), with nothing able to run
// in between. So onRequestStart registers the handler as `awaiting`, and the
// very next publication belongs to it. A request aborted inside
// onRequestStart never publishes: its handler clears itself (forgetSend) when
// it fails, so a stale registration cannot claim someone else's socket.
// Publications with no registration (health checks, fetch) only count.

import diagnostics_channel from 'node:diagnostics_channel';

/** Receives the number of requests its connection had carried, this one included. */
export interface SendObserver {
  socketUses: number;
}

const uses = new WeakMap<object, number>();
let awaiting: SendObserver | null = null;

function onSendHeaders(message: unknown): void {
  const socket = (message as { socket?: object }).socket;
  if (socket === undefined) return;
  const n = (uses.get(socket) ?? 0) + 1;
  uses.set(socket, n);
  const observer = awaiting;
  if (observer !== null) {
    awaiting = null;
    observer.socketUses = n;
  }
}

diagnostics_channel.subscribe('undici:client:sendHeaders', onSendHeaders);

/** Call from onRequestStart: the next request head undici writes is this observer's. */
export function expectSend(observer: SendObserver): void {
  awaiting = observer;
}

/** Call when a request ends or fails: drop a registration that was never claimed. */
export function forgetSend(observer: SendObserver): void {
  if (awaiting === observer) awaiting = null;
}
