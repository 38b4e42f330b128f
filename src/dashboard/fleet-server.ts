// The fleet's dashboard, served by `baton fleet dashboard` on the operator's
// own machine (where the fleet file, the ssh keys and the rollout records
// are), on a loopback listener, with the same sign-in as the daemon's: a
// one-time link printed by the command, a session cookie, a CSRF token on the
// one action (sign out). The page is the table of hosts; the command asks
// every host over its ssh connection every few seconds and calls update(),
// and what changed goes to the open pages over server-sent events.

import type * as http from 'node:http';
import { nodeHttp } from '../core/node-http.ts';
import { isIP } from 'node:net';
import { BatonError, errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { Assets } from './assets.ts';
import { DashboardAuth, DEFAULT_LOGIN_TTL_MS, MAX_LOGIN_TTL_MS, type Session } from './auth.ts';
import { fleetFragments, fleetPage, type FleetView } from './fleet-page.ts';
import { html, type Html } from './html.ts';
import * as pages from './pages.ts';
import { allowedHost, clearedCookie, cookie, entry, openEventStream, readForm, REFUSED, send, sendAsset, signedIn, sse, type Entry } from './web.ts';

export interface FleetDashboardOptions {
  host: string;
  port: number;
  /** The latest view of the fleet (the command keeps it). */
  view: () => FleetView;
  sessionTimeoutMs: number;
  logger: Logger;
}

const MAX_STREAMS = 32;

export class FleetDashboard {
  readonly #o: FleetDashboardOptions;
  readonly #assets: Assets;
  readonly #auth: DashboardAuth;
  readonly #server: http.Server;
  /** Each open page's stream and the fragments it was last sent. */
  readonly #streams = new Map<http.ServerResponse, { session: Session; sent: Map<string, string> }>();
  #entry: Entry = entry('local', 0);
  #address = { host: '', port: 0 };

  private constructor(o: FleetDashboardOptions) {
    this.#o = o;
    this.#assets = Assets.load();
    this.#auth = new DashboardAuth({ sessionTimeoutMs: () => o.sessionTimeoutMs });
    this.#server = nodeHttp.createServer((req, res) => {
      this.#handle(req, res).catch((err) => this.#fail(res, err));
    });
    this.#server.headersTimeout = 10_000;
  }

  static async start(o: FleetDashboardOptions): Promise<FleetDashboard> {
    const d = new FleetDashboard(o);
    await new Promise<void>((resolve, reject) => {
      d.#server.once('error', (err: NodeJS.ErrnoException) => reject(new BatonError('LISTEN_FAILED', `fleet dashboard: cannot listen on ${o.host}:${o.port}: ${err.code ?? err.message}`)));
      d.#server.listen(o.port, o.host, () => resolve());
    });
    const a = d.#server.address() as { address: string; port: number };
    d.#address = { host: a.address, port: a.port };
    d.#entry = entry('local', a.port);
    return d;
  }

  get address(): { host: string; port: number } {
    return this.#address;
  }

  /** A one-time sign-in link. */
  login(ttlMs = DEFAULT_LOGIN_TTL_MS): { url: string; expiresAt: number } {
    if (!Number.isInteger(ttlMs) || ttlMs < 1000 || ttlMs > MAX_LOGIN_TTL_MS) {
      throw new BatonError('USAGE', `a login link lives from 1 s to ${MAX_LOGIN_TTL_MS / 60_000} min, got ${ttlMs} ms`);
    }
    const { token, expiresAt } = this.#auth.issueLogin(ttlMs, 'local');
    const host = isIP(this.#address.host) === 6 ? `[${this.#address.host}]` : this.#address.host;
    return { url: `http://${host}:${this.#address.port}/login?token=${token}`, expiresAt };
  }

  /** The view changed (a round of asking the hosts ended): send each open page what differs. */
  update(): void {
    const frags = fleetFragments(this.#o.view());
    for (const [res, s] of this.#streams) this.#push(res, s.sent, frags);
  }

  async close(): Promise<void> {
    for (const res of this.#streams.keys()) res.end();
    this.#streams.clear();
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const e = this.#entry;
    const hostHeader = req.headers.host ?? '';
    // DNS rebinding: a hostile site's name resolving to 127.0.0.1 is refused.
    if (!allowedHost(hostHeader)) return send(res, 403, 'text/plain; charset=utf-8', 'baton fleet dashboard: this Host is not allowed; use the address `baton fleet dashboard` prints\n');
    const url = new URL(req.url ?? '/', 'http://dashboard');
    const method = req.method ?? 'GET';
    if ((method === 'GET' || method === 'HEAD') && url.pathname.startsWith('/assets/')) return sendAsset(this.#assets, req, res, url.pathname);
    if (method === 'GET' && url.pathname === '/login') return this.#login(res, e, url.searchParams.get('token') ?? '');
    const session = this.#auth.session(cookie(req, e.cookieName), e.door);
    if (method === 'POST') {
      if (!session) return this.#refuse(res, 'Not signed in: `baton fleet dashboard` prints a login link (Enter in its terminal prints another).');
      if (req.headers.origin !== `${e.scheme}://${hostHeader}`) return this.#refuse(res, 'The request did not come from this dashboard (Origin mismatch).');
      const form = await readForm(req);
      if (!this.#auth.checkCsrf(session, form.get('_csrf'))) return this.#refuse(res, 'The form\'s security token is missing or wrong: reload the page and try again.');
      if (url.pathname !== '/logout') return this.#page(res, 404, pages.plainPage(this.#assets, 'Not found', html`<p><a href="/">The fleet</a></p>`));
      this.#auth.end(session);
      for (const [r, s] of this.#streams) if (s.session === session) r.end();
      return this.#page(res, 200, pages.plainPage(this.#assets, 'Signed out', html`<p>Press Enter in the terminal of <code>baton fleet dashboard</code> for a new link.</p>`), { 'set-cookie': clearedCookie(e) });
    }
    if (method !== 'GET' && method !== 'HEAD') return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, POST' });
    if (!session) return this.#page(res, 401, pages.plainPage(this.#assets, 'Sign in', html`<p><code>baton fleet dashboard</code> prints a link that signs this browser in once (Enter in its terminal prints another).</p>`));
    if (url.pathname === '/live') return this.#liveStream(req, res, session);
    if (url.pathname === '/') {
      const v = this.#o.view();
      const ctx: pages.PageContext = { assets: this.#assets, csrf: session.csrf, services: [], flash: null };
      return this.#page(res, 200, fleetPage(ctx, v, fleetFragments(v)));
    }
    return this.#page(res, 404, pages.plainPage(this.#assets, 'Not found', html`<p><a href="/">The fleet</a></p>`));
  }

  #liveStream(req: http.IncomingMessage, res: http.ServerResponse, session: Session): void {
    if (this.#streams.size >= MAX_STREAMS) return send(res, 503, 'text/plain; charset=utf-8', `too many open dashboard pages (${MAX_STREAMS})\n`);
    openEventStream(res);
    const s = { session, sent: new Map<string, string>() };
    this.#streams.set(res, s);
    req.socket.once('close', () => this.#streams.delete(res));
    this.#push(res, s.sent, fleetFragments(this.#o.view()));
  }

  #push(res: http.ServerResponse, sent: Map<string, string>, frags: Record<string, Html>): void {
    const changed: Record<string, string> = {};
    for (const [id, h] of Object.entries(frags)) {
      if (sent.get(id) !== h.value) changed[id] = h.value;
      sent.set(id, h.value);
    }
    if (Object.keys(changed).length) sse(res, 'fragments', changed);
  }

  #login(res: http.ServerResponse, e: Entry, token: string): void {
    const r = this.#auth.redeem(token, e.door);
    if (typeof r === 'string') {
      this.#o.logger.warn('fleet dashboard login refused', { reason: r });
      return this.#page(res, 403, pages.plainPage(this.#assets, 'Sign-in refused', html`<p>${REFUSED[r]}</p><p>Press Enter in the terminal of <code>baton fleet dashboard</code> for a new link.</p>`));
    }
    signedIn(res, e, r.cookie);
  }

  #page(res: http.ServerResponse, status: number, page: Html, extra: Record<string, string> = {}): void {
    send(res, status, 'text/html; charset=utf-8', page.value, extra);
  }

  #refuse(res: http.ServerResponse, why: string): void {
    this.#page(res, 403, pages.plainPage(this.#assets, 'Refused', html`<p>${why}</p>`));
  }

  #fail(res: http.ServerResponse, err: unknown): void {
    if (res.headersSent) return void res.end();
    this.#o.logger.error('fleet dashboard request failed', { error: errorMessage(err) });
    send(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
  }
}
