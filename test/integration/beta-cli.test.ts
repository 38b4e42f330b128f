// `baton beta` (issue 8): the link has the listener's scheme and port (or the
// service's public_url), and --ttl is echoed as given ("24h", not "1440m00s").

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createDaemon, serviceYaml, type TestDaemon } from '../helpers/daemon.ts';

let d: TestDaemon;
before(async () => {
  d = await createDaemon();
});
after(async () => {
  await d?.cleanup();
});

test('the beta link names the listener\'s scheme and port, and the ttl as given', async () => {
  assert.equal((await d.cli(['deploy', 'web', await d.release('v1')])).code, 0);
  const r = await d.cli(['beta', 'web', '--ttl', '24h']);
  assert.equal(r.code, 0, r.stderr);
  const [link, note] = r.stdout.split('\n');
  assert.ok(link!.startsWith(`http://127.0.0.1:${d.port}/_baton/beta?token=`), link);
  assert.match(note!, /valid 24h:/);
  // The link is served at that address (no canary now: the visitor just lands on the site).
  const res = await fetch(link!, { redirect: 'manual' });
  await res.arrayBuffer();
  assert.ok(res.status < 400, `status ${res.status}`);
});

test('a configured public_url is the base of the link', async () => {
  await d.writeConfig(serviceYaml({ extra: 'public_url: https://www.example.com/' }));
  const reload = await d.cli(['reload']);
  assert.equal(reload.code, 0, reload.stderr);
  const r = await d.cli(['beta', 'web', '--ttl', '90m', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok((JSON.parse(r.stdout).url as string).startsWith('https://www.example.com/_baton/beta?token='), r.stdout);
});
