// The control API server: JSON over HTTP on a Unix socket (mode 0600), used by
// the CLI. Long operations stream NDJSON events and end with a result line.

import { bindListener } from '../core/listen-fds.ts';
import type * as http from 'node:http';
import { nodeHttp } from '../core/node-http.ts';
import type https from 'node:https';
import net from 'node:net';
import { createHash, timingSafeEqual } from 'node:crypto';
import { chmod, chown, mkdir, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { BatonError, errorMessage, isBatonError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { DeployEvent, DeployOutcome, RunHooks } from '../core/deployment.ts';
import { followService, stoppedLogs, tailLog, type LogSource } from '../supervisor/index.ts';
import type { AuditLog } from './audit.ts';
import { API_PREFIX, type ApiError, type DeploySource, type DeploymentInfo, type ReleaseInfo, type ReloadResult, type StatusResponse, type StreamLine, type UpgradeProgress, type UpgradeResult } from './protocol.ts';

/** What the control API needs from the daemon. */
export interface ControlHandlers {
  status(service?: string): StatusResponse;
  releases(service: string): ReleaseInfo[];
  /** `seq`: one deployment, by its number within the service. */
  history(service: string, limit: number, withEvents: boolean, seq?: number): DeploymentInfo[];
  logFiles(service: string): string[];
  /** Where the service's instance logs are (those of stopped instances too). */
  logDir(service: string): string;
  deploy(service: string, source: DeploySource, actor: string, emit: (e: DeployEvent) => void, hooks?: RunHooks): Promise<DeployOutcome>;
  rollback(service: string, to: string | undefined, actor: string, emit: (e: DeployEvent) => void, hooks?: RunHooks): Promise<DeployOutcome>;
  restart(service: string, actor: string, emit: (e: DeployEvent) => void, hooks?: RunHooks): Promise<DeployOutcome>;
  reload(): Promise<ReloadResult>;
  /** Resolves once the next step is routed. */
  promote(service: string, full: boolean): Promise<unknown>;
  /** Resolves once the abort is live (traffic back on the stable release, or the cancelled deploy's instances stopped). */
  abort(service: string, deployment?: number, interrupted?: boolean): Promise<unknown>;
  setMaintenance(service: string, on: boolean, message: string): Promise<unknown>;
  setPaused(service: string, paused: boolean): unknown;
  beta(service: string, ttlMs: number): unknown;
  /** `remote`: asked over the TLS control listener, whose Host the link then names (the dashboard is mounted there too). */
  dashboardLogin(ttlMs?: number, remote?: { host: string }): { url: string; expiresAt: number };
  stop(stopInstances: boolean): Promise<void>;
  /** Hand over to a new daemon (`baton upgrade`); resolves once it serves and this one drains. */
  upgrade(emit: (p: UpgradeProgress) => void): Promise<UpgradeResult>;
  setHostDrain(mode: 'ready' | 'drain' | 'maint', weightPercent: number | null, reason: string): Promise<unknown>;
  /** A front service's target drained here by the operator (no new request), or put back. */
  setTargetDrain(service: string, target: string, drain: boolean, reason: string): Promise<unknown>;
}


const MAX_BODY = 64 * 1024;

/** What a remote (TCP) control listener needs: TLS always, and the token every request must carry. */
export interface RemoteControlOptions {
  host: string;
  port: number;
  cert: string;
  key: string;
  token: string;
  /**
   * The dashboard mounted on this listener: requests outside the API's prefix
   * go to it without the bearer token (a browser has none); it signs browsers
   * in with its own one-time links, which only the token's holder can ask for.
   */
  web?: (req: http.IncomingMessage, res: http.ServerResponse) => void;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export class ControlServer {
  readonly #h: ControlHandlers;
  readonly #log: Logger;
  readonly #server: http.Server;
  readonly #audit: AuditLog | null;
  /** The actor a request named in its body (deploy, rollback, restart), for the audit log. */
  readonly #actors = new WeakMap<http.IncomingMessage, string>();
  readonly #via = new WeakMap<http.IncomingMessage, 'unix' | 'tcp'>();
  #remote: https.Server | null = null;
  #socketPath: string | null = null;

  constructor(handlers: ControlHandlers, logger: Logger, audit: AuditLog | null = null) {
    this.#h = handlers;
    this.#log = logger;
    this.#audit = audit;
    this.#server = nodeHttp.createServer((req, res) => this.#serve(req, res, 'unix', 'local'));
  }

  #serve(req: http.IncomingMessage, res: http.ServerResponse, via: 'unix' | 'tcp', peer: string, refused?: string): void {
    const audit = this.#audit;
    // Reads over the local socket are not actions; everything else is recorded once the answer is known.
    if (audit !== null && (via === 'tcp' || req.method !== 'GET')) {
      res.once('close', () => {
        const path = (req.url ?? '/').split('?')[0]!;
        audit.record({ via, peer, actor: this.#actors.get(req) ?? null, method: req.method ?? '?', path, status: res.statusCode, ...(refused ? { refused } : {}) });
      });
    }
    this.#via.set(req, via);
    if (refused !== undefined) {
      json(res, 401, { error: { code: 'CONTROL_UNAUTHORIZED', message: refused, details: [] } });
      return;
    }
    this.#handle(req, res).catch((err) => this.#fail(res, err));
  }

  /**
   * The control API on a TCP port, for remote tools: HTTPS only (TLS 1.2+), and
   * every request must carry `Authorization: Bearer TOKEN` (compared in constant
   * time); anything else gets 401 and an audit line, and reaches no handler.
   */
  async listenRemote(opts: RemoteControlOptions): Promise<{ host: string; port: number }> {
    const expected = digest(opts.token);
    const web = opts.web;
    // node:https only for a TCP control listener: a daemon without one never loads it.
    const server = process.getBuiltinModule('node:https').createServer({ cert: opts.cert, key: opts.key, minVersion: 'TLSv1.2' }, (req, res) => {
      if (web && !(req.url ?? '/').startsWith(API_PREFIX + '/')) return web(req, res);
      const auth = req.headers.authorization ?? '';
      const given = auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
      const ok = given !== '' && timingSafeEqual(digest(given), expected);
      this.#serve(req, res, 'tcp', req.socket.remoteAddress ?? '?', ok ? undefined : given === '' ? 'no bearer token' : 'wrong token');
    });
    server.headersTimeout = 10_000;
    server.on('tlsClientError', (_err, socket) => socket.destroy());
    try {
      await bindListener(server, 'control-remote', opts.host, opts.port);
    } catch (err) {
      throw new BatonError('LISTEN_FAILED', `cannot listen for remote control on ${opts.host}:${opts.port}: ${errorMessage(err)}`);
    }
    this.#remote = server;
    const a = server.address() as net.AddressInfo;
    this.#log.info('control listening (TLS, token)', { host: a.address, port: a.port });
    return { host: a.address, port: a.port };
  }

  /** Refuse to start a second daemon on the same socket; remove a stale socket file. */
  static async assertNoOtherDaemon(socketPath: string): Promise<void> {
    const alive = await new Promise<boolean>((resolve) => {
      const s = net.connect(socketPath);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (alive) {
      throw new BatonError('USAGE', `another baton daemon is already running on ${socketPath}; stop it first (\`baton shutdown\`) or use another state directory`);
    }
    await unlink(socketPath).catch(() => {});
  }

  /**
   * Listen on socketPath: mode 0600 unless `access` opens it to a group (the
   * socket's group is set before its mode widens, so no other group ever can).
   */
  async listen(socketPath: string, access: { gid: number | null; mode: number } = { gid: null, mode: 0o600 }, replace = false): Promise<void> {
    await mkdir(path.dirname(socketPath), { recursive: true });
    if (replace) {
      // A successor (`baton upgrade`): ready beside the old socket, then renamed
      // over it in one step, so a client reaches either daemon, never neither.
      const beside = `${socketPath}.${process.pid}.new`;
      await unlink(beside).catch(() => {});
      await this.listen(beside, access);
      await rename(beside, socketPath);
      this.#socketPath = socketPath;
      return;
    }
    // Create the socket with no access for others from the first instant.
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        this.#server.once('error', reject);
        this.#server.listen(socketPath, () => {
          this.#server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(oldMask);
    }
    if (access.gid !== null) await chown(socketPath, -1, access.gid);
    await chmod(socketPath, access.mode);
    this.#socketPath = socketPath;
  }

  /**
   * keepPath: the socket's path now belongs to a successor (`baton upgrade`).
   * libuv unlinks a Unix socket's path when its listener closes, so the
   * listener is then left open (unreferenced) until the process exits: it
   * stops answering only by the process's exit. Connections still open are closed.
   */
  async close(keepPath = false): Promise<void> {
    const remote = this.#remote;
    if (remote !== null) {
      remote.close();
      remote.closeAllConnections();
    }
    if (keepPath) {
      this.#socketPath = null;
      this.#server.unref();
      this.#server.closeIdleConnections();
      await this.#audit?.flushed();
      return;
    }
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeIdleConnections();
      setTimeout(() => {
        this.#server.closeAllConnections();
        resolve();
      }, 1000).unref();
    });
    if (this.#socketPath) await unlink(this.#socketPath).catch(() => {});
    await this.#audit?.flushed();
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://baton');
    const parts = url.pathname.startsWith(API_PREFIX + '/') ? url.pathname.slice(API_PREFIX.length + 1).split('/') : [];
    const method = req.method ?? 'GET';
    const h = this.#h;

    if (method === 'GET' && parts.length === 1 && parts[0] === 'status') {
      return json(res, 200, h.status(url.searchParams.get('service') ?? undefined));
    }
    if (method === 'POST' && parts.length === 1 && parts[0] === 'drain') {
      const body = await readJson(req);
      const mode = body['mode'];
      const weight = body['weightPercent'] ?? null;
      const reason = body['reason'] ?? '';
      if (mode !== 'ready' && mode !== 'drain' && mode !== 'maint') throw new BatonError('BAD_REQUEST', '"mode" must be "ready", "drain" or "maint"');
      if (weight !== null && typeof weight !== 'number') throw new BatonError('BAD_REQUEST', '"weightPercent" must be a number from 1 to 100');
      if (typeof reason !== 'string' || reason.length > 500) throw new BatonError('BAD_REQUEST', '"reason" must be a string of at most 500 characters');
      return json(res, 200, await h.setHostDrain(mode, weight, reason));
    }
    if (method === 'POST' && parts.length === 2 && parts[0] === 'target' && (parts[1] === 'drain' || parts[1] === 'undrain')) {
      const body = await readJson(req);
      const { service, target } = body;
      const reason = body['reason'] ?? '';
      if (typeof service !== 'string' || typeof target !== 'string') throw new BatonError('BAD_REQUEST', '"service" and "target" must be names');
      if (typeof reason !== 'string' || reason.length > 500) throw new BatonError('BAD_REQUEST', '"reason" must be a string of at most 500 characters');
      return json(res, 200, await h.setTargetDrain(service, target, parts[1] === 'drain', reason));
    }
    if (method === 'POST' && parts.length === 1 && parts[0] === 'reload') {
      return json(res, 200, await h.reload());
    }
    if (method === 'POST' && parts.length === 2 && parts[0] === 'dashboard' && parts[1] === 'login') {
      const ttl = (await readJson(req))['ttlMs'];
      if (ttl !== undefined && typeof ttl !== 'number') throw new BatonError('BAD_REQUEST', '"ttlMs" must be a number of milliseconds');
      // Over the TLS listener the link is for the dashboard mounted there, at the address this client used.
      const remote = this.#via.get(req) === 'tcp' ? { host: req.headers.host ?? '' } : undefined;
      return json(res, 200, h.dashboardLogin(ttl, remote));
    }
    if (method === 'POST' && parts.length === 1 && parts[0] === 'shutdown') {
      const body = await readJson(req);
      const stopInstances = body['stopInstances'] === true;
      json(res, 202, { stopping: true, stopInstances });
      // The daemon's entry point exits once stop() has finished.
      setImmediate(() => void h.stop(stopInstances).catch((err) => this.#log.error('shutdown failed', { error: errorMessage(err) })));
      return;
    }
    if (method === 'POST' && parts.length === 1 && parts[0] === 'upgrade') {
      const write = (line: StreamLine): void => {
        if (!res.headersSent) res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
        if (!res.destroyed && !res.writableEnded) res.write(JSON.stringify(line) + '\n');
      };
      const result = await h.upgrade((progress) => write({ type: 'upgrade', progress }));
      write({ type: 'upgraded', result });
      res.end();
      return;
    }
    if (parts.length === 3 && parts[0] === 'services') {
      const service = decodeURIComponent(parts[1]!);
      const verb = parts[2];
      if (method === 'GET' && verb === 'releases') return json(res, 200, h.releases(service));
      if (method === 'GET' && verb === 'history') {
        const limit = clampInt(url.searchParams.get('limit'), 20, 1, 1000);
        // seq: the deployment's number within the service (web#12), as `baton history` shows it.
        const seq = url.searchParams.get('seq');
        if (seq !== null && !/^\d+$/.test(seq)) throw new BatonError('BAD_REQUEST', `deployment number must be a number, got "${seq}"`);
        return json(res, 200, h.history(service, limit, url.searchParams.get('events') === '1', seq === null ? undefined : Number(seq)));
      }
      if (method === 'GET' && verb === 'logs') return this.#logs(req, res, service, url);
      if (method === 'POST' && verb === 'promote') return json(res, 200, await h.promote(service, (await readJson(req))['full'] === true));
      if (method === 'POST' && verb === 'abort') {
        const body = await readJson(req);
        const deployment = body['deployment'];
        if (deployment !== undefined && (typeof deployment !== 'number' || !Number.isInteger(deployment))) throw new BatonError('BAD_REQUEST', '"deployment" must be a deployment id');
        // interrupted: the abort of a CLI's Ctrl-C, recorded as such.
        return json(res, 200, await h.abort(service, deployment, body['interrupted'] === true));
      }
      if (method === 'POST' && verb === 'pause') return json(res, 200, h.setPaused(service, true));
      if (method === 'POST' && verb === 'resume') return json(res, 200, h.setPaused(service, false));
      if (method === 'POST' && verb === 'maintenance') {
        const body = await readJson(req);
        if (typeof body['on'] !== 'boolean') throw new BatonError('BAD_REQUEST', 'maintenance needs "on": true or false');
        const message = body['message'] ?? '';
        if (typeof message !== 'string' || message.length > 2000) throw new BatonError('BAD_REQUEST', '"message" must be a string of at most 2000 characters');
        return json(res, 200, await h.setMaintenance(service, body['on'], message));
      }
      if (method === 'POST' && verb === 'beta') {
        const ttl = (await readJson(req))['ttlMs'] ?? 24 * 3600_000;
        if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1000 || ttl > 30 * 24 * 3600_000) {
          throw new BatonError('BAD_REQUEST', '"ttlMs" must be between 1 s and 30 days');
        }
        return json(res, 200, h.beta(service, ttl));
      }
      if (method === 'POST' && (verb === 'deploy' || verb === 'rollback' || verb === 'restart')) {
        const body = await readJson(req);
        const actor = typeof body['actor'] === 'string' ? body['actor'] : 'unknown';
        this.#actors.set(req, actor);
        const until = body['until'] ?? 'done';
        if (until !== 'done' && until !== 'switched') throw new BatonError('BAD_REQUEST', `"until" must be "done" or "switched", got ${JSON.stringify(until)}`);
        return stream(res, until, (emit, hooks) => {
          if (verb === 'deploy') return h.deploy(service, deploySource(body), actor, emit, hooks);
          if (verb === 'rollback') {
            const to = body['to'];
            if (to !== undefined && typeof to !== 'string') throw new BatonError('BAD_REQUEST', '"to" must be a release id');
            return h.rollback(service, to, actor, emit, hooks);
          }
          return h.restart(service, actor, emit, hooks);
        });
      }
    }
    throw new BatonError('BAD_REQUEST', `no such control API route: ${method} ${url.pathname}`);
  }

  /**
   * The last lines of the service's logs: first those of its most recent
   * stopped or failed instances (a failed deploy's crashed instances), then the
   * live ones; with follow=1, then every live instance's new lines, including
   * instances started after the request (a deploy, a restart).
   */
  async #logs(req: http.IncomingMessage, res: http.ServerResponse, service: string, url: URL): Promise<void> {
    const live = (): LogSource[] => this.#h.logFiles(service).map((file) => ({ id: path.basename(file, '.log'), file, live: true }));
    const current = live();
    const lines = clampInt(url.searchParams.get('lines'), 50, 0, 10_000);
    const stoppedCount = clampInt(url.searchParams.get('stopped'), Math.max(2, current.length), 0, 100);
    const stopped = (await stoppedLogs(this.#h.logDir(service), new Set(current.map((s) => s.id)), stoppedCount)).reverse();
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    for (const src of [...stopped, ...current]) {
      for (const l of await tailLog(src.file, lines).catch(() => [])) res.write(`${src.id} | ${l}\n`);
    }
    if (url.searchParams.get('follow') !== '1') {
      res.end();
      return;
    }
    const ac = new AbortController();
    req.socket.once('close', () => ac.abort());
    await followService(live, (id, l) => void res.write(`${id} | ${l}\n`), ac.signal);
    res.end();
  }

  #fail(res: http.ServerResponse, err: unknown): void {
    const e: ApiError = isBatonError(err)
      ? err.toJSON()
      : { code: 'INTERNAL', message: errorMessage(err), details: [] };
    if (!isBatonError(err)) this.#log.error('control API request failed', { error: errorMessage(err) });
    if (res.headersSent) {
      res.end(JSON.stringify({ type: 'error', error: e } satisfies StreamLine) + '\n');
      return;
    }
    json(res, isBatonError(err) ? err.httpStatus : 500, { error: e });
  }
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Run a long operation, streaming its events as NDJSON. The headers are sent
 * with the first event, so an operation refused up front (unknown service, a
 * deploy already running) still gets a plain JSON error with a 4xx status.
 */
async function stream(
  res: http.ServerResponse,
  until: 'done' | 'switched',
  op: (emit: (e: DeployEvent) => void, hooks: RunHooks) => Promise<DeployOutcome>,
): Promise<void> {
  const write = (line: StreamLine): void => {
    if (!res.headersSent) res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    if (!res.destroyed && !res.writableEnded) res.write(JSON.stringify(line) + '\n');
  };
  const end = (outcome: DeployOutcome): void => {
    if (res.writableEnded) return;
    write({ type: 'result', outcome });
    res.end();
  };
  // A CLI that goes away does not stop the deployment: it runs to its end
  // (the CLI's Ctrl-C asks for an abort explicitly). With until 'switched' the
  // answer ends at the switch and draining goes on here.
  const outcome = await op((event) => write({ type: 'event', event }), until === 'switched' ? { switched: end } : {});
  end(outcome);
}

/** Exactly one source: a directory, a git ref, or a pushed commit (none = the service's git branch). */
function deploySource(body: Record<string, unknown>): DeploySource {
  const strategy = body['strategy'];
  if (strategy !== undefined && strategy !== 'blue_green' && strategy !== 'canary') {
    throw new BatonError('BAD_REQUEST', `"strategy" must be "blue_green" or "canary", got ${JSON.stringify(strategy)}`);
  }
  const skipMigrate = body['skipMigrate'];
  if (skipMigrate !== undefined && typeof skipMigrate !== 'boolean') throw new BatonError('BAD_REQUEST', '"skipMigrate" must be true or false');
  const steps = body['steps'];
  if (steps !== undefined && (typeof steps !== 'string' || steps.length > 500)) throw new BatonError('BAD_REQUEST', '"steps" must be text like "10,50"');
  if (steps !== undefined && strategy === 'blue_green') throw new BatonError('BAD_REQUEST', '--steps is a canary plan; it cannot go with --strategy blue_green');
  const source = sourceOf(body);
  return { ...source, ...(strategy === undefined ? {} : { strategy }), ...(skipMigrate ? { skipMigrate } : {}), ...(steps === undefined ? {} : { steps }) };
}

function sourceOf(body: Record<string, unknown>): DeploySource {
  const { releaseDir, ref, push } = body;
  const given = [releaseDir, ref, push].filter((x) => x !== undefined).length;
  if (given > 1) throw new BatonError('BAD_REQUEST', 'give one of "releaseDir", "ref" or "push"');
  if (releaseDir !== undefined) {
    if (typeof releaseDir !== 'string' || releaseDir === '') throw new BatonError('BAD_REQUEST', '"releaseDir" must be a directory path');
    return { dir: releaseDir };
  }
  if (ref !== undefined) {
    if (typeof ref !== 'string' || ref === '') throw new BatonError('BAD_REQUEST', '"ref" must be a branch, tag or commit');
    return { ref };
  }
  if (push !== undefined) {
    const p = push as Record<string, unknown>;
    const env = p['env'];
    const okEnv = env !== null && typeof env === 'object' && Object.values(env as object).every((v) => typeof v === 'string');
    if (typeof p['gitDir'] !== 'string' || typeof p['commit'] !== 'string' || typeof p['ref'] !== 'string' || !okEnv) {
      throw new BatonError('BAD_REQUEST', '"push" needs gitDir, commit, ref (strings) and env (strings)');
    }
    return { push: { gitDir: p['gitDir'], commit: p['commit'], ref: p['ref'], env: env as Record<string, string> } };
  }
  return {};
}

async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) throw new BatonError('BAD_REQUEST', `request body over ${MAX_BODY} bytes`);
    chunks.push(c);
  }
  if (size === 0) return {};
  try {
    const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new BatonError('BAD_REQUEST', 'request body must be a JSON object');
}

function clampInt(v: string | null, dflt: number, min: number, max: number): number {
  const n = v === null ? dflt : Number.parseInt(v, 10);
  return Number.isFinite(n) ? Math.min(max, Math.max(min, n)) : dflt;
}
