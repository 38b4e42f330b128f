// One HTTP health check against an instance: GET with a deadline, no pooled
// connection left behind, nothing that keeps the event loop alive.

import { nodeHttp } from '../core/node-http.ts';

/**
 * GET http://127.0.0.1:PORT{path}. Resolves null on 2xx/3xx, else a short
 * description of the failure. Never rejects. Aborting `signal` ends the check
 * at once (resolving 'aborted').
 */
export function probeHttp(port: number, path: string, timeoutMs: number, signal?: AbortSignal): Promise<string | null> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (result: string | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve(result);
    };
    // agent:false: a fresh connection per check, closed after it, never pooled.
    const req = nodeHttp.get({ host: '127.0.0.1', port, path, agent: false, headers: { 'user-agent': 'baton-health', connection: 'close' }, signal });
    const timer = setTimeout(() => finish(`timed out after ${timeoutMs} ms`), timeoutMs);
    timer.unref();
    req.on('socket', (socket) => socket.unref());
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      finish(status >= 200 && status < 400 ? null : `HTTP ${status}`);
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.name === 'AbortError') finish('aborted');
      else finish(err.code ?? err.message);
    });
  });
}
