// The dashboard's HTTP listener (loopback only, never the proxy's): sign-in
// through one-time links, pages, live fragments over server-sent events, and
// the operator's actions. Actions call the very daemon methods the control
// API calls for the CLI (promote, abort, rollback, a front target's drain and
// undrain), so the rules are the same.

import { bindListener } from '../core/listen-fds.ts';
import { existsSync } from 'node:fs';
import type * as http from 'node:http';
import { nodeHttp } from '../core/node-http.ts';
import { isIP } from 'node:net';
import { BatonError, errorMessage, isBatonError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { ListenerConfig } from '../config/types.ts';
import type { AuditEntry } from '../control/audit.ts';
import type { ControlHandlers } from '../control/server.ts';
import type { FrontServiceStatus, StatusResponse } from '../control/protocol.ts';
import type { DeployEvent, DeployOutcome } from '../core/deployment.ts';
import { hookLogFile } from '../deploy/prepare.ts';
import type { HookName } from '../hooks/index.ts';
import type { ReleaseMetrics } from '../proxy/types.ts';
import { followLog, tailLog } from '../supervisor/index.ts';
import { Assets } from './assets.ts';
import { DashboardAuth, DEFAULT_LOGIN_TTL_MS, MAX_LOGIN_TTL_MS, type Door, type Session } from './auth.ts';
import { html, type Html } from './html.ts';
import { LiveFigures } from './live.ts';
import * as pages from './pages.ts';
import * as fronts from './front-pages.ts';
import { allowedHost, clearedCookie, cookie, decodePathPart, entry, isHostPort, openEventStream, readForm, REFUSED, SECURITY_HEADERS, send, sendAsset, signedIn, sse, type Entry } from './web.ts';
import path from 'node:path';

/** What the dashboard needs from the daemon: the control API's own handlers, and the proxy's figures. */
export interface DashboardHost extends Pick<ControlHandlers, 'status' | 'history' | 'logFiles' | 'promote' | 'abort' | 'rollback' | 'setTargetDrain'> {
  readonly stateDir: string;
}

export interface DashboardOptions {
  host: DashboardHost;
  metrics: (service: string) => ReleaseMetrics[];
  listener: ListenerConfig;
  sessionTimeoutMs: () => number;
  logger: Logger;
  /** The daemon's audit log: every sign-in and every posted action, refused ones too. */
  audit?: (entry: AuditEntry) => void;
}

const HOOKS: HookName[] = ['build', 'migrate', 'smoke', 'after_switch'];
const LOG_TAIL_LINES = 200;
const HOOK_TAIL_LINES = 40;
const MAX_STREAMS = 32;

/** The verbs a signed-in operator may post, with the question asked before. */
const ACTIONS: Record<string, (service: string) => string> = {
  promote: (s) => `Promote the canary of ${s} to its next step?`,
  'promote-full': (s) => `Send all of ${s}'s traffic to its canary now?`,
  abort: (s) => `Abort the canary of ${s}: all traffic back to the stable release?`,
  rollback: (s) => `Roll ${s} back to its previous release?`,
};

interface Stream {
  session: Session;
  res: http.ServerResponse;
  onTick: () => void;
}

export class Dashboard {
  readonly #o: DashboardOptions;
  readonly #assets: Assets;
  readonly #auth: DashboardAuth;
  readonly #live: LiveFigures;
  readonly #server: http.Server;
  readonly #streams = new Set<Stream>();
  readonly #flash = new WeakMap<Session, { ok: boolean; text: string }>();
  /** What the audit line of a request will say: the session behind it, or why it was refused. */
  readonly #audit = new WeakMap<http.ServerResponse, { actor?: string; refused?: string }>();
  #address: { host: string; port: number } = { host: '', port: 0 };

  private constructor(o: DashboardOptions, assets: Assets) {
    this.#o = o;
    this.#assets = assets;
    this.#auth = new DashboardAuth({ sessionTimeoutMs: o.sessionTimeoutMs });
    this.#live = new LiveFigures({ services: () => serviceNames(o.host.status()), metrics: o.metrics });
    this.#server = nodeHttp.createServer((req, res) => {
      this.#handle(req, res, entry('local', this.#address.port)).catch((err) => this.#fail(res, err));
    });
    this.#server.headersTimeout = 10_000;
  }

  static async start(o: DashboardOptions): Promise<Dashboard> {
    const d = new Dashboard(o, Assets.load());
    await bindListener(d.#server, 'dashboard', o.listener.host, o.listener.port).catch((err: NodeJS.ErrnoException) => {
      throw new BatonError('LISTEN_FAILED', `dashboard: cannot listen on ${o.listener.host}:${o.listener.port}: ${err.code ?? err.message}`);
    });
    const a = d.#server.address() as { address: string; port: number };
    d.#address = { host: a.address, port: a.port };
    d.#live.start();
    d.#live.onSampled(() => {
      for (const s of d.#streams) s.onTick();
    });
    return d;
  }

  get address(): { host: string; port: number } {
    return this.#address;
  }

  assetSizes(): { name: string; bytes: number; gzip: number }[] {
    return this.#assets.sizes();
  }

  /** A one-time sign-in link for the loopback listener (asked for through the control socket by `baton dashboard`). */
  login(ttlMs = DEFAULT_LOGIN_TTL_MS): { url: string; expiresAt: number } {
    const { token, expiresAt } = this.#issue(ttlMs, 'local');
    const host = isIP(this.#address.host) === 6 ? `[${this.#address.host}]` : this.#address.host;
    return { url: `http://${host}:${this.#address.port}/login?token=${token}`, expiresAt };
  }

  /**
   * A one-time sign-in link for the dashboard mounted on the TLS control
   * listener (`baton dashboard` with BATON_REMOTE: asked for with the token),
   * at `host`, the address the asking client reached that listener by.
   */
  loginTls(host: string, ttlMs = DEFAULT_LOGIN_TTL_MS): { url: string; expiresAt: number } {
    if (!isHostPort(host)) throw new BatonError('BAD_REQUEST', `the request's Host ${JSON.stringify(host)} cannot stand in a link`);
    const { token, expiresAt } = this.#issue(ttlMs, 'tls');
    return { url: `https://${host}/login?token=${token}`, expiresAt };
  }

  #issue(ttlMs: number, door: Door): { token: string; expiresAt: number } {
    if (!Number.isInteger(ttlMs) || ttlMs < 1000 || ttlMs > MAX_LOGIN_TTL_MS) {
      throw new BatonError('BAD_REQUEST', `a login link lives from 1 s to ${MAX_LOGIN_TTL_MS / 60_000} min, got ${ttlMs} ms`);
    }
    return this.#auth.issueLogin(ttlMs, door);
  }

  /** A request that came through the TLS control listener (the daemon mounts the dashboard there beside the API). */
  serveTls(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.#handle(req, res, entry('tls', req.socket.localPort ?? 0)).catch((err) => this.#fail(res, err));
  }

  async close(): Promise<void> {
    this.#live.stop();
    for (const s of this.#streams) s.res.end();
    this.#streams.clear();
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  // ---- requests ---------------------------------------------------------------

  async #handle(req: http.IncomingMessage, res: http.ServerResponse, e: Entry): Promise<void> {
    const hostHeader = req.headers.host ?? '';
    // DNS rebinding: a hostile site's name resolving to 127.0.0.1 is refused; IP literals and localhost are fine (over TLS the certificate binds the name).
    if (e.door === 'local' && !allowedHost(hostHeader)) return this.#send(res, 403, 'text/plain; charset=utf-8', 'baton dashboard: this Host is not allowed; use the address `baton dashboard` prints\n');
    const url = new URL(req.url ?? '/', 'http://dashboard');
    const method = req.method ?? 'GET';

    if ((method === 'GET' || method === 'HEAD') && url.pathname.startsWith('/assets/')) return this.#asset(req, res, url.pathname);
    if (method === 'POST' || (method === 'GET' && url.pathname === '/login')) this.#audited(req, res, e, url.pathname);
    if (method === 'GET' && url.pathname === '/login') return this.#login(res, e, url.searchParams.get('token') ?? '');
    if (method === 'GET' && url.pathname === '/favicon.ico') return this.#send(res, 404, 'text/plain', '');

    const session = this.#auth.session(cookie(req, e.cookieName), e.door);
    if (method === 'POST') {
      if (session) this.#note(res, { actor: actorOf(session) });
      if (!session) return this.#refuse(res, 'Not signed in: run `baton dashboard` on the server for a login link.');
      if (req.headers.origin !== `${e.scheme}://${hostHeader}`) return this.#refuse(res, 'The request did not come from this dashboard (Origin mismatch).');
      const form = await readForm(req);
      if (!this.#auth.checkCsrf(session, form.get('_csrf'))) return this.#refuse(res, 'The form\'s security token is missing or wrong: reload the page and try again.');
      return this.#post(res, session, e, url.pathname, form);
    }
    if (method !== 'GET' && method !== 'HEAD') return this.#send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, POST' });
    if (!session) {
      return this.#page(res, 401, pages.plainPage(this.#assets, 'Sign in', html`<p>Run <code>baton dashboard</code> on the server: it prints a link that signs this browser in once.</p>`));
    }
    return this.#get(req, res, session, url);
  }

  async #get(req: http.IncomingMessage, res: http.ServerResponse, session: Session, url: URL): Promise<void> {
    const parts = url.pathname.split('/').filter(Boolean).map((p) => decodePathPart(p, url.pathname));
    if (parts[0] === 'live' && parts.length === 1) return this.#liveStream(req, res, session, url);
    if (parts.length === 4 && parts[0] === 'services' && parts[2] === 'logs' && parts[3] === 'live') {
      this.#o.host.logFiles(parts[1]!); // unknown, or a front service (no instance here): refused before the stream opens
      return this.#logStream(req, res, session, parts[1]!);
    }
    // A page: it shows (and so takes) the message left by the last action.
    const ctx = this.#ctx(session);
    if (parts.length === 0) {
      const status = this.#o.host.status();
      const frags = this.#overviewFragments(status);
      return this.#page(res, 200, pages.overviewPage(ctx, status, frags, fronts.frontOverview(status, frags)));
    }
    if (parts[0] === 'services' && parts.length >= 2) {
      const name = parts[1]!;
      const front = this.#front(name); // an unknown service is a 404 here
      if (front !== null) {
        if (parts.length === 2) return this.#page(res, 200, fronts.frontPage(ctx, name, fronts.frontFragments(ctx, front, this.#live), this.#live.history(name)));
        return this.#page(res, 404, pages.plainPage(this.#assets, 'Not found', html`<p>${name} is a front service: it runs nothing here, so it has no deployments or logs of its own; see its targets' hosts.</p><p><a href="/services/${encodeURIComponent(name)}">Back to ${name}</a></p>`));
      }
      if (parts.length === 2) {
        const frags = pages.serviceFragments(ctx, await this.#serviceView(name), this.#live);
        return this.#page(res, 200, pages.servicePage(ctx, name, frags, this.#live.history(name)));
      }
      if (parts.length === 3 && parts[2] === 'history') return this.#page(res, 200, pages.historyPage(ctx, name, this.#o.host.history(name, 50, true)));
      if (parts.length === 3 && parts[2] === 'logs') return this.#page(res, 200, pages.logsPage(ctx, name, await this.#logTail(name)));
    }
    return this.#page(res, 404, pages.plainPage(this.#assets, 'Not found', html`<p><a href="/">All services</a></p>`));
  }

  async #post(res: http.ServerResponse, session: Session, e: Entry, pathname: string, form: URLSearchParams): Promise<void> {
    if (pathname === '/logout') {
      this.#auth.end(session);
      for (const s of this.#streams) if (s.session === session) s.res.end();
      return this.#page(res, 200, pages.plainPage(this.#assets, 'Signed out', html`<p>Run <code>baton dashboard</code> for a new link.</p>`), { 'set-cookie': clearedCookie(e) });
    }
    const t = /^\/services\/([^/]+)\/targets\/([^/]+)\/(drain|undrain)$/.exec(pathname);
    if (t) return this.#postTarget(res, session, decodePathPart(t[1]!, pathname), decodePathPart(t[2]!, pathname), t[3] as 'drain' | 'undrain', form);
    const m = /^\/services\/([^/]+)\/([a-z-]+)$/.exec(pathname);
    const verb = m?.[2] ?? '';
    if (!m || !(verb in ACTIONS)) return this.#page(res, 404, pages.plainPage(this.#assets, 'Not found', html`<p><a href="/">All services</a></p>`));
    const service = decodePathPart(m[1]!, pathname);
    this.#o.host.status(service);
    if (form.get('confirmed') !== '1') {
      return this.#page(res, 200, pages.confirmPage(this.#ctx(session), service, `/services/${encodeURIComponent(service)}/${verb}`, ACTIONS[verb]!(service)));
    }
    const flash = await this.#act(service, verb).then(
      (text) => ({ ok: true, text }),
      (err: unknown) => {
        if (!isBatonError(err)) throw err;
        return { ok: false, text: err.message };
      },
    );
    this.#o.logger.info('dashboard action', { service, action: verb, ok: flash.ok, result: flash.text });
    this.#flash.set(session, flash);
    res.writeHead(303, { location: `/services/${encodeURIComponent(service)}`, 'cache-control': 'no-store', ...SECURITY_HEADERS });
    res.end();
  }

  /** A front target drained or undrained here, as `baton target drain|undrain` does (the control API's own handler). */
  async #postTarget(res: http.ServerResponse, session: Session, service: string, target: string, verb: 'drain' | 'undrain', form: URLSearchParams): Promise<void> {
    const front = this.#front(service);
    if (front === null) throw new BatonError('SERVICE_UNKNOWN', `"${service}" is not a front service: it has no targets to drain`);
    if (!front.targets.some((x) => x.name === target)) {
      throw new BatonError('SERVICE_UNKNOWN', `front service "${service}" has no target "${target}" (targets: ${front.targets.map((x) => x.name).join(', ')})`);
    }
    if (form.get('confirmed') !== '1') {
      return this.#page(res, 200, pages.confirmPage(this.#ctx(session), service, fronts.targetActionPath(service, target, verb), fronts.targetQuestion(service, target, verb)));
    }
    const flash = await this.#o.host.setTargetDrain(service, target, verb === 'drain', 'from the dashboard').then(
      (r) => {
        const state = (r as { state: string }).state;
        const text = verb === 'drain'
          ? `${target} drained at the front of ${service}: no new request; those in flight finish.`
          : state === 'up' ? `${target} is back in rotation at the front of ${service}.` : `${target} undrained here, still out of rotation (${state}).`;
        return { ok: true, text };
      },
      (err: unknown) => {
        if (!isBatonError(err)) throw err;
        return { ok: false, text: err.message };
      },
    );
    this.#o.logger.info('dashboard action', { service, target, action: verb, ok: flash.ok, result: flash.text });
    this.#flash.set(session, flash);
    res.writeHead(303, { location: `/services/${encodeURIComponent(service)}`, 'cache-control': 'no-store', ...SECURITY_HEADERS });
    res.end();
  }

  /** Run an action with the daemon's own methods; the answer is the operator's confirmation text. */
  async #act(service: string, verb: string): Promise<string> {
    const h = this.#o.host;
    if (verb === 'promote' || verb === 'promote-full') {
      // Answers once the promotion is routed.
      const r = (await h.promote(service, verb === 'promote-full')) as { release: string; weight: number; step: number; of: number; switched: boolean };
      return r.switched ? `${r.release} now serves all of ${service}.` : `${r.release} now gets ${r.weight}% of ${service}'s visitors (step ${r.step} of ${r.of}).`;
    }
    if (verb === 'abort') {
      const r = (await h.abort(service)) as { seq: number; what: 'canary' | 'deploy' };
      return r.what === 'canary' ? `Deployment #${r.seq} aborted: all traffic is back on the stable release.` : `Deployment #${r.seq} cancelled before its switch.`;
    }
    const id = await startLong((emit) => h.rollback(service, undefined, 'dashboard', emit), this.#o.logger);
    return `Rolling back ${service}: deployment #${id} is running.`;
  }

  // ---- live streams -------------------------------------------------------------

  #liveStream(req: http.IncomingMessage, res: http.ServerResponse, session: Session, url: URL): void {
    const service = url.searchParams.get('service');
    if (service) this.#front(service);
    if (!this.#openStream(res)) return;
    const sent = new Map<string, string>();
    let busy = false;
    const push = async (): Promise<void> => {
      if (busy) return;
      busy = true;
      try {
        const ctx = this.#ctx(session, false);
        const front = service ? this.#front(service) : null;
        const frags = front !== null
          ? fronts.frontFragments(ctx, front, this.#live)
          : service
            ? pages.serviceFragments(ctx, await this.#serviceView(service), this.#live)
            : this.#overviewFragments(this.#o.host.status());
        const changed: Record<string, string> = {};
        for (const [id, h] of Object.entries(frags)) {
          if (sent.get(id) !== h.value) changed[id] = h.value;
          sent.set(id, h.value);
        }
        if (Object.keys(changed).length) sse(res, 'fragments', changed);
        if (service) {
          const tick = this.#live.latest(service);
          if (tick) sse(res, 'tick', tick);
        }
      } catch (err) {
        // A service removed by a reload: the page has nothing left to show.
        sse(res, 'gone', { message: errorMessage(err) });
        res.end();
      } finally {
        busy = false;
      }
    };
    const stream: Stream = { session, res, onTick: () => void push() };
    this.#streams.add(stream);
    req.socket.once('close', () => this.#streams.delete(stream));
    void push();
  }

  #logStream(req: http.IncomingMessage, res: http.ServerResponse, session: Session, service: string): void {
    if (!this.#openStream(res)) return;
    const ac = new AbortController();
    const stream: Stream = { session, res, onTick: () => res.write(': keep-alive\n\n') };
    this.#streams.add(stream);
    req.socket.once('close', () => {
      ac.abort();
      this.#streams.delete(stream);
    });
    for (const f of this.#o.host.logFiles(service)) {
      const id = path.basename(f, '.log');
      void followLog(f, (lines) => sse(res, 'lines', lines.map((l) => `${id} | ${l}`)), ac.signal).catch(() => {});
    }
  }

  #openStream(res: http.ServerResponse): boolean {
    if (this.#streams.size >= MAX_STREAMS) {
      this.#send(res, 503, 'text/plain; charset=utf-8', `too many open dashboard pages (${MAX_STREAMS})\n`);
      return false;
    }
    openEventStream(res);
    return true;
  }

  // ---- helpers --------------------------------------------------------------------

  /** One audit line once the answer is known, as the control API writes for its own requests. */
  #audited(req: http.IncomingMessage, res: http.ServerResponse, e: Entry, pathname: string): void {
    const audit = this.#o.audit;
    if (!audit) return;
    res.once('close', () => {
      const n = this.#audit.get(res) ?? {};
      audit({ via: e.door === 'tls' ? 'dashboard-tls' : 'dashboard', peer: req.socket.remoteAddress ?? '?', actor: n.actor ?? null, method: req.method ?? '?', path: pathname, status: res.statusCode, ...(n.refused ? { refused: n.refused } : {}) });
    });
  }

  #note(res: http.ServerResponse, n: { actor?: string; refused?: string }): void {
    this.#audit.set(res, { ...this.#audit.get(res), ...n });
  }

  /** A front service's status, or null for a service that runs instances here; an unknown name throws (a 404). */
  #front(name: string): FrontServiceStatus | null {
    return this.#o.host.status(name).fronts?.[0] ?? null;
  }

  #overviewFragments(status: StatusResponse): pages.Fragments {
    return { ...pages.overviewFragments(status, this.#live), ...fronts.frontOverviewFragments(status, this.#live) };
  }

  async #serviceView(name: string): Promise<pages.ServiceView> {
    const status = this.#o.host.status(name).services[0]!;
    const deployment = this.#o.host.history(name, 1, true)[0] ?? null;
    const hooks: pages.ServiceView['hooks'] = [];
    if (deployment) {
      for (const h of HOOKS) {
        const file = hookLogFile(this.#o.host.stateDir, name, deployment.seq, h);
        // Only the hooks this deployment ran have a file.
        if (!existsSync(file)) continue;
        hooks.push({ name: h, lines: await tailLog(file, HOOK_TAIL_LINES).catch(() => []) });
      }
    }
    return { status, deployment, hooks };
  }

  async #logTail(service: string): Promise<string[]> {
    const out: string[] = [];
    for (const f of this.#o.host.logFiles(service)) {
      const id = path.basename(f, '.log');
      for (const l of await tailLog(f, LOG_TAIL_LINES).catch(() => [])) out.push(`${id} | ${l}`);
    }
    return out;
  }

  #ctx(session: Session, takeFlash = true): pages.PageContext {
    const flash = takeFlash ? (this.#flash.get(session) ?? null) : null;
    if (takeFlash) this.#flash.delete(session);
    return { assets: this.#assets, csrf: session.csrf, services: serviceNames(this.#o.host.status()), flash };
  }

  #login(res: http.ServerResponse, e: Entry, token: string): void {
    const r = this.#auth.redeem(token, e.door);
    if (typeof r === 'string') {
      this.#note(res, { refused: `login link ${r}` });
      this.#o.logger.warn('dashboard login refused', { reason: r });
      return this.#page(res, 403, pages.plainPage(this.#assets, 'Sign-in refused', html`<p>${REFUSED[r]}</p><p>Run <code>baton dashboard</code> on the server for a new link.</p>`));
    }
    this.#note(res, { actor: actorOf(r.session) });
    this.#o.logger.info('dashboard login', { door: e.door });
    signedIn(res, e, r.cookie);
  }

  #asset(req: http.IncomingMessage, res: http.ServerResponse, pathname: string): void {
    sendAsset(this.#assets, req, res, pathname);
  }

  #page(res: http.ServerResponse, status: number, page: Html, extra: Record<string, string> = {}): void {
    this.#send(res, status, 'text/html; charset=utf-8', page.value, extra);
  }

  #refuse(res: http.ServerResponse, why: string): void {
    this.#note(res, { refused: why });
    this.#page(res, 403, pages.plainPage(this.#assets, 'Refused', html`<p>${why}</p>`));
  }

  #send(res: http.ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
    send(res, status, type, body, extra);
  }

  #fail(res: http.ServerResponse, err: unknown): void {
    if (res.headersSent) return void res.end();
    if (isBatonError(err)) {
      const status = err.code === 'SERVICE_UNKNOWN' ? 404 : 400;
      return this.#page(res, status, pages.plainPage(this.#assets, status === 404 ? 'Not found' : 'Refused', html`<p>${err.message}</p><p><a href="/">All services</a></p>`));
    }
    this.#o.logger.error('dashboard request failed', { error: errorMessage(err) });
    this.#send(res, 500, 'text/plain; charset=utf-8', 'internal error (see the daemon log)\n');
  }
}

/** Every service's name, front services too (they are routed by the same proxy, so they have figures). */
const serviceNames = (s: StatusResponse): string[] => [...s.services, ...(s.fronts ?? [])].map((x) => x.name);

/** A session as the audit log names it: its id (not its secret). */
const actorOf = (s: Session): string => `dashboard session ${s.id}`;

/** Start a long operation; resolve with its deployment's number in the service once it has begun, reject if it is refused up front. */
function startLong(op: (emit: (e: DeployEvent) => void) => Promise<DeployOutcome>, logger: Logger): Promise<number> {
  return new Promise((resolve, reject) => {
    let started = false;
    op((e) => {
      started = true;
      resolve(e.seq);
    }).then(
      (o) => resolve(o.seq),
      (err: unknown) => {
        if (started) logger.warn('dashboard operation failed', { error: errorMessage(err) });
        reject(err);
      },
    );
  });
}
