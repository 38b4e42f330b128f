// The queue of requests held while a service is paused (FIFO; a client that leaves is removed at once).

import type { IncomingMessage } from 'node:http';
import type net from 'node:net';
import type { BatonResponse, SnapshotRef } from './forwarder.ts';

/** A request (or WebSocket upgrade) waiting for the pause to end. */
export interface HeldRequest {
  readonly req: IncomingMessage;
  /** The response of an HTTP request; null for an upgrade. */
  readonly res: BatonResponse | null;
  /** The client socket of an upgrade; null for an HTTP request. */
  readonly socket: net.Socket | null;
  /** Upgrade: bytes the client sent after the request head. */
  head: Buffer;
  /** performance.now() at the request's arrival. */
  readonly start: number;
  /** The snapshot holder of the listener it arrived on. */
  readonly ref: SnapshotRef;
  timer: NodeJS.Timeout | null;
  /** Removes the item when the client leaves. */
  onGone: () => void;
  /** Upgrade: collects bytes sent while held. */
  onData: ((chunk: Buffer) => void) | null;
}

export class PauseQueue {
  // A Set keeps insertion order and removes from the middle in O(1).
  readonly #items = new Set<HeldRequest>();

  get size(): number {
    return this.#items.size;
  }

  add(item: HeldRequest): void {
    this.#items.add(item);
  }

  /** False when the item was not (or no longer) held. */
  delete(item: HeldRequest): boolean {
    return this.#items.delete(item);
  }

  /** Every held item, oldest first; the queue is left empty. */
  takeAll(): HeldRequest[] {
    const all = [...this.#items];
    this.#items.clear();
    return all;
  }
}
