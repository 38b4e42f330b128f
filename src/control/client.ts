// The CLI's client for the control API over the daemon's Unix socket.

import http from 'node:http';
import { BatonError, isErrorCode } from '../core/errors.ts';
import { API_PREFIX, type ApiError, type StreamLine } from './protocol.ts';

export class ControlClient {
  readonly socketPath: string;
  /** What to tell the operator when nothing listens on the socket, e.g. the command that starts the daemon. */
  readonly #notRunningHint: string;

  constructor(socketPath: string, notRunningHint = 'is the daemon running?') {
    this.socketPath = socketPath;
    this.#notRunningHint = notRunningHint;
  }

  async get<T>(path: string): Promise<T> {
    return parseAnswer(await this.#call('GET', path), path) as T;
  }

  async post<T>(path: string, body: unknown = {}): Promise<T> {
    return parseAnswer(await this.#call('POST', path, body), path) as T;
  }

  /** POST a long operation and hand each NDJSON line to onLine; resolves at the end of the stream. */
  stream(path: string, body: unknown, onLine: (line: StreamLine) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = this.#request('POST', path, (res) => {
        if (res.statusCode !== 200) {
          collect(res).then((text) => reject(toError(res.statusCode ?? 0, text)), reject);
          return;
        }
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (!line.trim()) continue;
            try {
              onLine(parseAnswer(line, path) as StreamLine);
            } catch (err) {
              req.destroy();
              reject(err);
              return;
            }
          }
        });
        res.on('end', () => resolve());
        res.on('error', reject);
      }, reject);
      req.end(JSON.stringify(body));
    });
  }

  /** GET a text stream (logs), handing chunks to onText until it ends or the signal aborts. */
  text(path: string, onText: (s: string) => void, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = this.#request('GET', path, (res) => {
        if (res.statusCode !== 200) {
          collect(res).then((t) => reject(toError(res.statusCode ?? 0, t)), reject);
          return;
        }
        res.setEncoding('utf8');
        res.on('data', onText);
        res.on('end', () => resolve());
        res.on('error', () => resolve());
      }, reject);
      signal?.addEventListener('abort', () => {
        req.destroy();
        resolve();
      }, { once: true });
      req.end();
    });
  }

  #call(method: string, path: string, body?: unknown): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = this.#request(method, path, (res) => {
        collect(res).then((text) => {
          if ((res.statusCode ?? 0) >= 400) reject(toError(res.statusCode ?? 0, text));
          else resolve(text);
        }, reject);
      }, reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  #request(method: string, path: string, onResponse: (res: http.IncomingMessage) => void, onError: (e: Error) => void): http.ClientRequest {
    const req = http.request({ socketPath: this.socketPath, method, path: API_PREFIX + path, headers: { 'content-type': 'application/json' } }, onResponse);
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
        onError(new BatonError('DAEMON_UNREACHABLE', `cannot reach the baton daemon at ${this.socketPath} (${err.code}); ${this.#notRunningHint}`));
      } else if (err.code === 'EACCES') {
        onError(new BatonError('DAEMON_UNREACHABLE', `no permission to use the control socket ${this.socketPath}; run as the daemon's user`));
      } else {
        onError(new BatonError('DAEMON_UNREACHABLE', `cannot talk to the baton daemon at ${this.socketPath}: ${err.message}`));
      }
    });
    return req;
  }
}

/** The daemon's JSON answer; anything else is a daemon (or socket) that is not baton's. */
function parseAnswer(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new BatonError('INTERNAL', `the daemon's answer to ${path} is not JSON: ${JSON.stringify(text.slice(0, 200))}`);
  }
}

function collect(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}

function toError(status: number, text: string): BatonError {
  try {
    const e = (JSON.parse(text) as { error: ApiError }).error;
    // A code this CLI does not know (a newer daemon) is still shown, under INTERNAL's rules.
    if (isErrorCode(e.code)) return new BatonError(e.code, e.message, e.details);
    return new BatonError('INTERNAL', `${e.code}: ${e.message}`, e.details);
  } catch {
    return new BatonError('INTERNAL', `daemon answered ${status}: ${text.slice(0, 200)}`);
  }
}
