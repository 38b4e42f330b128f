import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { WebSocketServer } from 'ws';
import { makeBetaToken } from '../../src/proxy/index.ts';
import type { CanarySpec, ServiceRouteSpec, UpstreamTarget } from '../../src/proxy/index.ts';
import { hashSeed, keyBucket, Signer } from '../../src/proxy/sticky.ts';
import { closedPort, request, service, startProxy, startServer, target, withTimeout, type SimpleResponse } from '../fixtures/proxy-harness.ts';

const SECRET = 'test-secret';
const COOKIE = 'baton_bucket';
const BETA = 'baton_beta';

/** Two upstreams that answer their name; the stable one also sets a cookie of its own. */
async function pools(t: TestContext): Promise<{ stable: UpstreamTarget; canary: UpstreamTarget }> {
  const s = await startServer(t, (req, res) => {
    req.resume();
    res.setHeader('set-cookie', 'app=1; Path=/');
    res.end('stable');
  });
  const c = await startServer(t, (req, res) => {
    req.resume();
    res.end('canary');
  });
  return { stable: target('s1', s.port, 'r1'), canary: target('c1', c.port, 'r2') };
}

function canary(targets: UpstreamTarget[], weight: number, extra: Partial<CanarySpec> = {}): CanarySpec {
  return {
    release: 'r2',
    targets,
    weight,
    sticky: { cookie: COOKIE, secret: SECRET, key: { kind: 'random' } },
    overrides: { header: null, betaCookie: null, networks: [] },
    ...extra,
  };
}

function spec(stable: UpstreamTarget[], c: CanarySpec | null, extra: Partial<ServiceRouteSpec> = {}): { services: ServiceRouteSpec[] } {
  return { services: [service('web', stable, { isDefault: true, canary: c, ...extra })] };
}

/** The value baton set for its bucket cookie in a response, if any. */
function bucketCookie(r: SimpleResponse, name = COOKIE): string | undefined {
  const all = r.headers['set-cookie'] ?? [];
  const mine = all.find((c) => c.startsWith(`${name}=`));
  return mine === undefined ? undefined : mine.slice(name.length + 1).split(';')[0];
}

/** `n` requests, `concurrency` at a time on a keep-alive agent; how many the canary answered. */
async function countCanary(t: TestContext, port: number, n: number, headers: (i: number) => http.OutgoingHttpHeaders): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  t.after(() => agent.destroy());
  let next = 0;
  let canaryCount = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      const r = await request(port, { headers: headers(i), agent });
      assert.equal(r.status, 200);
      if (r.body === 'canary') canaryCount++;
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return canaryCount;
}

test('split by weight: a header key spreads 4,000 distinct visitors within ±3 points of 10% and 50%', async (t) => {
  const { stable, canary: c } = await pools(t);
  const { proxy, port } = await startProxy(t);
  for (const weight of [10, 50]) {
    proxy.apply(spec([stable], canary([c], weight, { sticky: { cookie: COOKIE, secret: SECRET, key: { kind: 'header', header: 'X-User' } } })));
    const n = 4000;
    const got = await countCanary(t, port, n, (i) => ({ 'x-user': `user-${weight}-${i}` }));
    const pct = (got / n) * 100;
    assert.ok(Math.abs(pct - weight) <= 3, `weight ${weight}: ${pct.toFixed(2)}% to the canary`);
  }
  const rc = proxy.routingCounters('web');
  assert.equal(rc.stable + rc.canary, 8000);
  assert.equal(rc.cookiesSet, 8000, 'a cookie for every visitor without one');
});

test('split by weight: 4,000 cookieless requests with a random key, 10% within ±3 points', async (t) => {
  const { stable, canary: c } = await pools(t);
  const { proxy, port } = await startProxy(t);
  proxy.apply(spec([stable], canary([c], 10)));
  const n = 4000;
  // sd ≈ 0.47 points: ±3 points is more than 6 sd (the 50% case is checked on 200,000 draws in the unit tests).
  const pct = ((await countCanary(t, port, n, () => ({}))) / n) * 100;
  assert.ok(Math.abs(pct - 10) <= 3, `${pct.toFixed(2)}% to the canary`);
});

test('sticky: 200 clients keeping their cookie move stable → canary exactly once as the weight goes 0 → 10 → 50 → 100', async (t) => {
  const { stable, canary: c } = await pools(t);
  const { proxy, port } = await startProxy(t);
  const clients = 200;
  const jars: (string | undefined)[] = new Array(clients).fill(undefined);
  const seen: string[][] = Array.from({ length: clients }, () => []);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  t.after(() => agent.destroy());
  for (const weight of [0, 10, 50, 100]) {
    proxy.apply(spec([stable], canary([c], weight)));
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < clients) {
        const i = next++;
        // Two requests per phase: the second one must agree with the first.
        for (let k = 0; k < 2; k++) {
          const jar = jars[i];
          const r = await request(port, { agent, headers: jar === undefined ? {} : { cookie: `app=1; ${COOKIE}=${jar}` } });
          assert.equal(r.status, 200);
          const set = bucketCookie(r);
          if (jar === undefined) {
            assert.ok(set !== undefined, 'a client without a cookie gets one');
            jars[i] = set;
          } else {
            assert.equal(set, undefined, 'a valid cookie is not replaced');
          }
          seen[i]!.push(r.body);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
  }
  let atTen = 0;
  for (const [i, s] of seen.entries()) {
    const changes = s.filter((v, k) => k > 0 && v !== s[k - 1]);
    assert.deepEqual(changes, ['canary'], `client ${i}: ${s.join(' ')}`);
    assert.equal(s[0], 'stable');
    assert.equal(s.at(-1), 'canary');
    if (s[2] === 'canary') atTen++;
  }
  assert.ok(atTen > 0 && atTen < 60, `${atTen} of 200 on the canary at 10%`);
});

test('forged, garbled and out-of-range bucket cookies count as absent and are replaced; the app\'s own Set-Cookie is kept', async (t) => {
  const { stable, canary: c } = await pools(t);
  const { proxy, port } = await startProxy(t);
  proxy.apply(spec([stable], canary([c], 10, { sticky: { cookie: COOKIE, secret: SECRET, key: { kind: 'header', header: 'X-User' } } })));
  // A visitor whose own bucket is stable (≥ 1000), claiming canary buckets with cookies baton never signed.
  const seed = hashSeed(SECRET);
  let user = 0;
  while (keyBucket(seed, `u${user}`) < 5000) user++;
  const own = keyBucket(seed, `u${user}`);
  const signer = new Signer(SECRET);
  const sigOf5 = signer.bucketCookie(5).split('.')[1]!;
  const forged = [`0.${'A'.repeat(16)}`, `5.${new Signer('not-the-secret').bucketCookie(5).split('.')[1]}`, '5', 'garbage', `05.${sigOf5}`, `10005.${sigOf5}`, `5.${sigOf5}x`, ''];
  for (const value of forged) {
    const r = await request(port, { headers: { 'x-user': `u${user}`, 'cookie': `${COOKIE}=${value}` } });
    assert.equal(r.body, 'stable', `cookie ${JSON.stringify(value)}`);
    assert.equal(bucketCookie(r), signer.bucketCookie(own), `replaced: ${JSON.stringify(value)}`);
    assert.ok(r.headers['set-cookie']!.includes('app=1; Path=/'), 'the app cookie is kept');
    const full = r.headers['set-cookie']!.find((x) => x.startsWith(`${COOKIE}=`))!;
    assert.match(full, /; Path=\/; HttpOnly; SameSite=Lax; Max-Age=2592000$/);
  }
  // The genuine cookie for bucket 5 is honoured (canary at 10%) and not re-set.
  const genuine = await request(port, { headers: { 'x-user': `u${user}`, 'cookie': `${COOKIE}=${signer.bucketCookie(5)}` } });
  assert.equal(genuine.body, 'canary');
  assert.equal(bucketCookie(genuine), undefined);
  // Without a canary no cookie is set at all.
  proxy.apply(spec([stable], null));
  const plain = await request(port, { headers: { 'x-user': `u${user}` } });
  assert.equal(plain.body, 'stable');
  assert.equal(bucketCookie(plain), undefined);
});

test('overrides reach the canary at weight 0: header, beta cookie from a one-time link, client network', async (t) => {
  const { stable, canary: c } = await pools(t);
  const { proxy, port } = await startProxy(t);
  proxy.apply(
    spec(
      [stable],
      canary([c], 0, { overrides: { header: { name: 'X-Baton-Release', value: 'canary' }, betaCookie: BETA, networks: ['127.0.0.2/32'] } }),
      { hosts: ['site.test'] },
    ),
  );
  const get = (headers: http.OutgoingHttpHeaders = {}, localAddress?: string, path = '/'): Promise<SimpleResponse> =>
    request(port, { path, headers: { host: 'site.test', ...headers }, localAddress });

  assert.equal((await get()).body, 'stable');
  assert.equal((await get({ 'x-baton-release': 'canary' })).body, 'canary');
  assert.equal((await get({ 'x-baton-release': 'stable' })).body, 'stable');

  // Network override: 127.0.0.2 is in the list, 127.0.0.1 is not.
  assert.equal((await get({}, '127.0.0.2')).body, 'canary');
  assert.equal((await get({}, '127.0.0.1')).body, 'stable');

  // Beta link: a 302 to / with the signed beta cookie, once.
  const token = makeBetaToken(SECRET, 60_000);
  const link = `/_baton/beta?token=${encodeURIComponent(token)}`;
  const first = await get({}, undefined, link);
  assert.equal(first.status, 302);
  assert.equal(first.headers['location'], '/');
  assert.equal(first.headers['cache-control'], 'no-store');
  const set = first.headers['set-cookie']!.find((x) => x.startsWith(`${BETA}=`))!;
  assert.match(set, /; Path=\/; HttpOnly; SameSite=Lax; Max-Age=2592000$/);
  const beta = set.slice(BETA.length + 1).split(';')[0]!;
  assert.equal((await get({ cookie: `${BETA}=${beta}` })).body, 'canary');
  // The link cannot be used twice.
  const again = await get({}, undefined, link);
  assert.equal(again.status, 400);
  assert.match(again.body, /invalid, has expired, or was already used/);
  assert.equal(again.headers['set-cookie'], undefined);
  // Expired, garbage, foreign-secret and missing tokens are refused.
  for (const bad of [
    makeBetaToken(SECRET, 1000, Date.now() - 5000),
    'garbage',
    makeBetaToken('another-secret', 60_000),
    token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A'),
  ]) {
    assert.equal((await get({}, undefined, `/_baton/beta?token=${encodeURIComponent(bad)}`)).status, 400, bad);
  }
  assert.equal((await get({}, undefined, '/_baton/beta')).status, 400);
  // A forged beta cookie is just a cookie.
  assert.equal((await get({ cookie: `${BETA}=${beta.slice(0, -2)}xx` })).body, 'stable');
  const rc = proxy.routingCounters('web');
  assert.equal(rc.betaLinksAccepted, 1);
  assert.equal(rc.betaLinksRefused, 6);
  assert.equal(rc.overrides, 3);

  // Without a beta cookie configured the path belongs to the app.
  proxy.apply(spec([stable], canary([c], 0), { hosts: ['site.test'] }));
  assert.equal((await get({}, undefined, link)).body, 'stable');
});

test('an empty pool falls back to the other; a refused canary attempt is retried on the canary first, then on stable', async (t) => {
  const { stable, canary: c } = await pools(t);
  const c2server = await startServer(t, (_req, res) => res.end('canary-2'));
  const { proxy, port } = await startProxy(t);

  proxy.apply(spec([stable], canary([], 100)));
  assert.equal((await request(port)).body, 'stable');
  proxy.apply(spec([], canary([c], 0)));
  assert.equal((await request(port)).body, 'canary');
  assert.equal(proxy.routingCounters('web').fallbacks, 2);
  proxy.apply(spec([], canary([], 50)));
  const none = await request(port);
  assert.equal(none.status, 503);
  assert.equal(none.headers['x-baton-error'], 'no_instance');

  // The canary's first target refuses: the other canary target answers, not stable.
  const dead = target('dead', await closedPort(t), 'r2');
  proxy.apply(spec([stable], canary([dead, target('c2', c2server.port, 'r2')], 100), { balance: 'round_robin' }));
  for (let i = 0; i < 4; i++) assert.equal((await request(port)).body, 'canary-2');
  // Only a refusing canary target: the retry goes to stable.
  proxy.apply(spec([stable], canary([dead], 100)));
  assert.equal((await request(port, { method: 'POST', body: 'x' })).body, 'stable');
  const dm = proxy.releaseMetrics('web').find((m) => m.release === 'r2')!;
  assert.ok(dm.connectionErrors >= 3 && dm.retries === dm.connectionErrors, JSON.stringify(dm));
  assert.equal(proxy.counters('web').failed, 1); // the 503 above
});

test('WebSocket upgrades follow the split and the overrides', async (t) => {
  const mk = async (name: string): Promise<UpstreamTarget> => {
    const s = await startServer(t, (_req, res) => res.end(name));
    const wss = new WebSocketServer({ server: s.server });
    wss.on('connection', (ws) => ws.send(name));
    t.after(() => wss.close());
    return target(name, s.port, name === 'canary' ? 'r2' : 'r1');
  };
  const st = await mk('stable');
  const ca = await mk('canary');
  const { proxy, port } = await startProxy(t);
  proxy.apply(spec([st], canary([ca], 0, { overrides: { header: { name: 'X-Baton-Release', value: 'canary' }, betaCookie: null, networks: [] } })));
  const hello = (headers: Record<string, string>): Promise<string> =>
    withTimeout(
      new Promise<string>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1');
        let got = '';
        s.on('data', (d: Buffer) => {
          got += d.toString('latin1');
          const m = /\r\n\r\n..(stable|canary)/s.exec(got);
          if (m !== null) {
            s.destroy();
            resolve(m[1]!);
          }
        });
        s.on('error', reject);
        const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
        s.write(`GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`);
      }),
      5000,
      'a WebSocket greeting',
    );
  assert.equal(await hello({}), 'stable');
  assert.equal(await hello({ 'X-Baton-Release': 'canary' }), 'canary');
  proxy.apply(spec([st], canary([ca], 100)));
  assert.equal(await hello({}), 'canary');
  const m = proxy.releaseMetrics('web');
  assert.equal(m.find((x) => x.release === 'r1')!.websocketsTotal, 1);
  assert.equal(m.find((x) => x.release === 'r2')!.websocketsTotal, 2);
});
