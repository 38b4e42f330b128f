// The CLI's client for the control API over the daemon's Unix socket, or over
// HTTPS with a bearer token when BATON_REMOTE names a daemon's control.remote listener.

import type * as http from 'node:http';
import { nodeHttp } from '../core/node-http.ts';
import https from 'node:https';
import { readFileSync, statSync } from 'node:fs';
import { BatonError, isErrorCode } from '../core/errors.ts';
import { API_PREFIX, type ApiError, type StreamLine } from './protocol.ts';

/** A daemon's remote control listener: its https:// URL, the token, and the CA to trust for it (none = the system's). */
export interface RemoteTarget {
  url: URL;
  token: string;
  ca: string | null;
}

/**
 * The remote target named by the environment: BATON_REMOTE (https://host:port),
 * BATON_TOKEN_FILE (mode 0600, required) and BATON_CA_FILE (optional); null
 * without BATON_REMOTE. Bad values are USAGE errors naming the variable.
 */
export function remoteFromEnv(env: NodeJS.ProcessEnv = process.env): RemoteTarget | null {
  const text = env['BATON_REMOTE'];
  if (text === undefined || text === '') return null;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new BatonError('USAGE', `BATON_REMOTE=${text}: expected an https:// URL such as https://10.0.0.5:9443`);
  }
  if (url.protocol !== 'https:') throw new BatonError('USAGE', `BATON_REMOTE=${text}: the remote control listener speaks HTTPS only, expected https://`);
  const tokenFile = env['BATON_TOKEN_FILE'];
  if (!tokenFile) throw new BatonError('USAGE', 'BATON_REMOTE is set but BATON_TOKEN_FILE is not: name the file holding the daemon\'s control token');
  let token: string;
  try {
    if ((statSync(tokenFile).mode & 0o077) !== 0) throw new BatonError('USAGE', `BATON_TOKEN_FILE=${tokenFile} is readable by others, expected mode 0600: chmod 600 ${tokenFile}`);
    token = readFileSync(tokenFile, 'utf8').trim();
  } catch (err) {
    if (err instanceof BatonError) throw err;
    throw new BatonError('USAGE', `BATON_TOKEN_FILE=${tokenFile}: cannot read it: ${(err as Error).message}`);
  }
  const caFile = env['BATON_CA_FILE'];
  let ca: string | null = null;
  if (caFile) {
    try {
      ca = readFileSync(caFile, 'utf8');
    } catch (err) {
      throw new BatonError('USAGE', `BATON_CA_FILE=${caFile}: cannot read it: ${(err as Error).message}`);
    }
  }
  return { url, token, ca };
}

export class ControlClient {
  readonly socketPath: string;
  /** What to tell the operator when nothing listens on the socket, e.g. the command that starts the daemon. */
  readonly #notRunningHint: string;
  readonly #remote: RemoteTarget | null;

  constructor(socketPath: string, notRunningHint = 'is the daemon running?', remote: RemoteTarget | null = null) {
    this.socketPath = socketPath;
    this.#notRunningHint = notRunningHint;
    this.#remote = remote;
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
    const r = this.#remote;
    if (r !== null) {
      const req = https.request(
        {
          host: r.url.hostname.replace(/^\[|\]$/g, ''),
          port: r.url.port || 443,
          method,
          path: API_PREFIX + path,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${r.token}` },
          ...(r.ca === null ? {} : { ca: r.ca }),
          agent: false,
        },
        onResponse,
      );
      // Never the token in a message: the URL and the cause only.
      req.on('error', (err) => onError(new BatonError('DAEMON_UNREACHABLE', `cannot talk to the baton daemon at ${r.url.origin}: ${err.message}`)));
      return req;
    }
    const req = nodeHttp.request({ socketPath: this.socketPath, method, path: API_PREFIX + path, headers: { 'content-type': 'application/json' } }, onResponse);
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
