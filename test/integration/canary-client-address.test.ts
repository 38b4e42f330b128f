// A canary split by client address (sticky.key: client_address): without
// cookies, every request from one address goes to the same release, whatever
// connection it comes on; different addresses are spread over both.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createDaemon, serviceYaml, waitUntil } from '../helpers/daemon.ts';
import { startLoad } from '../helpers/load.ts';

/** The releases one address saw over `n` fresh connections, no cookies. */
async function seenFrom(url: string, address: string, n: number): Promise<Record<string, number>> {
  const load = startLoad({ url, concurrency: 1, keepAlive: false, localAddress: address, maxRequests: n, maxMs: 30_000 });
  await load.waitFor(n, 30_000);
  const r = await load.stop();
  assert.equal(r.failed, 0, `${address}: ${r.errors.join('; ')}`);
  return r.bodies;
}

test('client_address stickiness: one address, one release, across connections and over time', async (t) => {
  const d = await createDaemon({
    services: serviceYaml({ extra: 'standby: 0s\ncanary:\n  steps: [{ weight: 50 }, { pause: promote }, { weight: 100 }]\n  sticky: { key: client_address }' }),
  });
  t.after(() => d.cleanup());
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
  const deploy = d.cli(['deploy', 'web', await d.release('v2'), '--strategy', 'canary'], 120_000);
  await waitUntil('the canary to hold at 50%', async () => {
    const c = (await d.status('web')).services[0].canary;
    return c !== null && c.weight === 50 && c.waiting === 'promote';
  }, 20_000, 100);

  const addresses = Array.from({ length: 24 }, (_, i) => `127.0.0.${i + 2}`);
  const first = new Map<string, string>();
  for (const a of addresses) {
    const bodies = await seenFrom(d.url + '/', a, 8);
    assert.equal(Object.keys(bodies).length, 1, `${a} saw one release, not ${JSON.stringify(bodies)}`);
    first.set(a, Object.keys(bodies)[0]!);
  }
  const versions = new Set(first.values());
  assert.deepEqual([...versions].sort(), ['v1', 'v2'], 'addresses are spread over both releases');
  // Later, and in another order, each address still lands where it did.
  for (const a of [...addresses].reverse()) {
    assert.deepEqual(Object.keys(await seenFrom(d.url + '/', a, 4)), [first.get(a)], `${a} stays on ${first.get(a)}`);
  }

  assert.equal((await d.cli(['abort', 'web'])).code, 0);
  await deploy;
});
