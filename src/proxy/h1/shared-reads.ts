// A plain client connection read into one buffer that all of them share
// (net's `onread`), instead of through the socket's Readable ('data').
//
// Why: every 'data' read costs a 64 KiB allocation by libuv's read, a copy
// into a new right-sized ArrayBuffer, Readable.push, addChunk and the event,
// and a collection later for the chunk. On this machine, with wrk's load, the
// lean path spent 3.5 µs less user time a request reading this way (15.4 →
// 11.8 µs) and served 12% more requests a second (bench/RESULTS.md section 24).
// The connections to instances already read so (upstream/pool.ts).
//
// How: net.Server takes no `onread` for the connections it accepts (only
// net.connect and `new net.Socket` do), so the accepted socket's handle moves
// into a new net.Socket made with one, before its first unread byte (Node's
// own child_process and cluster move handles between sockets the same way;
// behind the PROXY protocol, inside the header's 'data' listener). The accepted
// socket, left without a handle, is destroyed when the new one closes: the
// server's connection count (its close waits for it) and whatever listens
// for that socket's 'close' (the per-client connection cap) stay right.
//
// The view a reader gets is valid during its call only: what it keeps, it
// copies (isSharedView says whether a Buffer still points into it). After
// release() (node:http takes the connection) each read is pushed as a copy
// into the socket's Readable, so node:http, its upgrades and WebSocket
// tunnels read the socket as any other.

import { Buffer } from 'node:buffer';
import net, { type Socket } from 'node:net';
import { ownCopy } from '../upstream/pool.ts';

const READ_BUFFER_BYTES = 64 * 1024;

// Filled by one read, handed to its reader, and read again only after that
// call returned (JavaScript runs one callback at a time).
const readBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);

/** Whether `buf` is (part of) the shared read buffer: valid only during the read that filled it. */
export function isSharedView(buf: Buffer): boolean {
  return buf.buffer === readBuffer.buffer;
}

/** What net's `onread` needs of a stream handle (Node's TCPWrap). */
interface StreamHandle {
  readStart(): number;
  readStop(): number;
  useUserBuffer(buf: Uint8Array): void;
}

function isStreamHandle(h: unknown): h is StreamHandle {
  const o = h as Partial<StreamHandle> | null;
  return typeof o === 'object' && o !== null && typeof o.readStart === 'function' && typeof o.readStop === 'function' && typeof o.useUserBuffer === 'function';
}

/** A client connection whose reads go to a reader as views of the shared buffer, until release(). */
export class SharedReads {
  readonly socket: Socket;
  #reader: ((view: Buffer) => void) | null;

  constructor(handle: StreamHandle, allowHalfOpen: boolean, reader: (view: Buffer) => void) {
    this.#reader = reader;
    this.socket = new net.Socket({
      handle: handle as never,
      allowHalfOpen,
      readable: true,
      writable: true,
      onread: { buffer: readBuffer, callback: (n: number): boolean => this.#read(n) },
    } as net.SocketConstructorOpts);
  }

  /** From now on the socket is read as any other (its Readable gets a copy of each read). */
  release(): void {
    this.#reader = null;
  }

  /** net's onread callback: false stops reading until the Readable is read again (node:http's backpressure). */
  #read(n: number): boolean {
    const view = readBuffer.subarray(0, n);
    const reader = this.#reader;
    if (reader !== null) {
      reader(view);
      return true;
    }
    return this.socket.push(ownCopy(view));
  }
}

/**
 * Move an accepted plain socket's handle into a socket read into the shared
 * buffer, reads going to `reader`. The accepted socket may have been read
 * (a PROXY header: this may run in its 'data' listener) but must hold no
 * unread bytes and have no other reader. Null (the socket stays as it is)
 * when its handle is not the kind this knows, or it holds bytes or readers.
 */
export function sharedReads(accepted: Socket, reader: (view: Buffer) => void): SharedReads | null {
  const holder = accepted as unknown as { _handle: unknown };
  const handle = holder._handle;
  if (!isStreamHandle(handle) || accepted.readableLength !== 0 || accepted.listenerCount('data') !== 0 || accepted.destroyed) return null;
  holder._handle = null;
  const shared = new SharedReads(handle, accepted.allowHalfOpen, reader);
  // The accepted socket stands for the connection to its server and to those who listen on it.
  shared.socket.once('close', () => accepted.destroy());
  return shared;
}
