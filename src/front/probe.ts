// One check of a front service's target (another host's baton listener):
// its readiness URL over HTTP, and, when configured, its agent-check line.
// Each check uses a fresh connection closed after it, and never rejects.

import net from 'node:net';
import { nodeHttp } from '../core/node-http.ts';

/** What a readiness check found. */
export type HttpVerdict =
  | { kind: 'ok' }
  /** The host says it is drained: baton's /_baton/health answers 503 "draining" (`baton drain` on that host). */
  | { kind: 'drain' }
  | { kind: 'fail'; reason: string };

/** The longest body read from a check's answer (enough for "draining"). */
const BODY_LIMIT = 256;

/**
 * GET http://HOST:PORT{path} with `Host: hostHeader`. 2xx/3xx is ok; a 503
 * whose body is baton's "draining" is the host's drain (not a failure: the
 * host is alive and finishing what it has); anything else is a failure.
 */
export function probeHttp(host: string, port: number, path: string, hostHeader: string, timeoutMs: number): Promise<HttpVerdict> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (v: HttpVerdict): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve(v);
    };
    const req = nodeHttp.get({ host, port, path, agent: false, headers: { host: hostHeader, 'user-agent': 'baton-front-check', connection: 'close' } });
    const timer = setTimeout(() => finish({ kind: 'fail', reason: `timed out after ${timeoutMs} ms` }), timeoutMs);
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 400) {
        res.resume();
        finish({ kind: 'ok' });
        return;
      }
      if (status !== 503) {
        res.resume();
        finish({ kind: 'fail', reason: `HTTP ${status}` });
        return;
      }
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (body.length < BODY_LIMIT) body += chunk;
      });
      res.on('end', () => finish(body.trim() === 'draining' ? { kind: 'drain' } : { kind: 'fail', reason: 'HTTP 503' }));
      res.on('error', () => finish({ kind: 'fail', reason: 'HTTP 503 (body cut)' }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => finish({ kind: 'fail', reason: err.code ?? err.message }));
  });
}

/** What an agent-check line says (HAProxy's words: ready, drain, maint, down, up, NN%). */
export interface AgentVerdict {
  /** null when the line names no state (a bare "75%"): the state is left as it was. */
  state: 'ready' | 'drain' | 'maint' | 'down' | null;
  /** Share of the configured weight (0–100), or null when the line gives none. */
  percent: number | null;
}

/** Parse one agent-check line as HAProxy does: words separated by spaces, commas or tabs, in any order. */
export function parseAgentLine(line: string): AgentVerdict | null {
  let state: AgentVerdict['state'] = null;
  let percent: number | null = null;
  let understood = false;
  for (const word of line.trim().toLowerCase().split(/[\s,]+/)) {
    if (word === '') continue;
    const pct = /^(\d{1,3})%$/.exec(word);
    if (pct) {
      percent = Math.min(100, Number(pct[1]));
      understood = true;
    } else if (word === 'ready' || word === 'drain' || word === 'maint' || word === 'down') {
      state = word;
      understood = true;
    } else if (word === 'up') {
      state = 'ready';
      understood = true;
    } else if (word === 'stopped' || word === 'fail') {
      state = 'down';
      understood = true;
    }
  }
  return understood ? { state, percent } : null;
}

/** Connect to an agent-check port and read its one line (the agent closes after it). */
export function probeAgent(host: string, port: number, timeoutMs: number): Promise<AgentVerdict | { error: string }> {
  return new Promise((resolve) => {
    let done = false;
    let text = '';
    const finish = (v: AgentVerdict | { error: string }): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const sock = net.connect({ host, port });
    const timer = setTimeout(() => finish({ error: `agent timed out after ${timeoutMs} ms` }), timeoutMs);
    sock.setEncoding('utf8');
    const judge = (): void => {
      const line = text.split('\n')[0] ?? '';
      finish(parseAgentLine(line) ?? { error: `agent answered ${JSON.stringify(line.slice(0, 60))}` });
    };
    sock.on('data', (chunk: string) => {
      text += chunk;
      if (text.includes('\n') || text.length > BODY_LIMIT) judge();
    });
    sock.on('end', judge);
    sock.on('error', (err: NodeJS.ErrnoException) => finish({ error: `agent ${err.code ?? err.message}` }));
  });
}
