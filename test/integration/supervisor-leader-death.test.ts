// When an instance's leader dies (kill -9 of a gunicorn-like master), the
// instance is over at once, but the rest of its process group (workers in the
// middle of responses) may finish, up to the drain timeout; then it is killed.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { join } from 'node:path';
import { Instance, allocatePort } from '../../src/supervisor/index.ts';
import { isGroupAlive } from '../../src/core/proc.ts';
import { NODE, Recorder, cleanup, serviceConfig, tempDir } from '../fixtures/sup-harness.ts';

const LEADER = new URL('../fixtures/forking-leader.mjs', import.meta.url).pathname;

async function start(t: TestContext, drainTimeoutMs: number, env: Record<string, string> = {}) {
  const dir = await tempDir(t);
  const rec = new Recorder();
  const port = await allocatePort();
  const service = serviceConfig({ command: `exec '${NODE}' '${LEADER}'`, drainTimeoutMs });
  const inst = await Instance.spawn({ id: 'web-l1', service, release: 'r1', releaseDir: dir, port, logFile: join(dir, 'app.log'), extraEnv: env }, rec);
  cleanup(t, inst);
  // The leader's group outlives the leader here: kill whatever is left of it.
  t.after(() => {
    try {
      process.kill(-inst.pid, 'SIGKILL');
    } catch {
      // gone
    }
  });
  await inst.waitHealthy(10_000);
  return { inst, rec, port };
}

/** GET that resolves once the response has started, with the rest of the body to come. */
function startedResponse(port: number, path: string): Promise<{ status: number; rest: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      const rest = new Promise<string>((done, fail) => {
        res.on('end', () => done(body));
        res.on('error', fail);
        res.on('aborted', () => fail(new Error(`response cut after ${JSON.stringify(body)}`)));
      });
      res.once('data', (c: string) => {
        body += c;
        res.on('data', (more: string) => (body += more));
        resolve({ status: res.statusCode ?? 0, rest });
      });
    });
    req.on('error', reject);
  });
}

test('kill -9 of the leader: the instance exits at once, its worker finishes the response in flight', async (t) => {
  const { inst, rec, port } = await start(t, 20_000);
  const res = await startedResponse(port, '/stream');
  process.kill(inst.pid, 'SIGKILL');
  await rec.until(() => rec.exits.length === 1, 5000, 'instanceExited after the leader died');
  assert.equal(inst.state, 'exited');
  assert.ok(isGroupAlive(inst.pid), 'the worker was left to finish, not killed with the leader');
  assert.equal(res.status, 200);
  assert.equal(await res.rest, 'start\nr1\n', 'the response in flight completed');
  assert.equal(await inst.remainsGone, false, 'the worker exited by itself');
  assert.equal(isGroupAlive(inst.pid), false);
});

test('what is left of the group after the drain timeout is killed', async (t) => {
  const { inst, rec } = await start(t, 500, { FORKING_LEADER_STAY: '1' });
  process.kill(inst.pid, 'SIGKILL');
  await rec.until(() => rec.exits.length === 1, 5000, 'instanceExited after the leader died');
  assert.equal(await inst.remainsGone, true, 'the worker that stayed was killed');
  assert.equal(isGroupAlive(inst.pid), false);
});
