// A beta link works once, and "once" survives a daemon restart: the signing
// key is kept in the state directory, so the used tokens must be kept too.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { createDaemon, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';

let d: TestDaemon;
before(async () => {
  d = await createDaemon({
    services: serviceYaml({ extra: 'standby: 0s\ncanary:\n  steps: [{ weight: 10 }, { pause: promote }, { weight: 100 }]' }),
  });
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
});
after(async () => {
  await d?.cleanup();
});

async function canaryWaiting(): Promise<void> {
  await waitUntil('the canary to wait for a promote', async () => (await d.status('web')).services[0].canary?.waiting === 'promote', 20_000, 100);
}

async function visit(link: string): Promise<number> {
  const u = new URL(link);
  const r = await request(`${d.url}${u.pathname}${u.search}`);
  await r.body.text();
  return r.statusCode;
}

test('a beta link used before a daemon restart is refused after it', async () => {
  const first = d.cli(['deploy', 'web', await d.release('v2'), '--strategy', 'canary'], 60_000);
  await canaryWaiting();
  const link = JSON.parse((await d.cli(['beta', 'web', '--json'])).stdout).url as string;
  assert.equal(await visit(link), 302, 'the link works the first time');

  await d.kill9();
  await first.catch(() => {});
  await d.start();

  // The restart ended that canary (it had not switched); the link needs one to be served by baton.
  const second = d.cli(['deploy', 'web', await d.release('v3'), '--strategy', 'canary'], 60_000);
  await canaryWaiting();
  assert.equal(await visit(link), 400, 'the used link is refused after the restart');
  const fresh = JSON.parse((await d.cli(['beta', 'web', '--json'])).stdout).url as string;
  assert.equal(await visit(fresh), 302, 'a new link still works');
  assert.equal(await visit(fresh), 400, 'and only once');

  assert.equal((await d.cli(['abort', 'web'])).code, 0);
  await second;
});
