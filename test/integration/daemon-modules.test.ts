import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { createDaemon, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';

const PROBE = path.resolve(import.meta.dirname, '../fixtures/module-probe.mjs');

interface Loaded {
  /** URLs of the modules the daemon's loader has loaded. */
  modules: string[];
  /** Node's internal modules and bindings (process.moduleLoadList). */
  builtins: string[];
}

/** The modules loaded in the daemon now, as it reports them (test/fixtures/module-probe.mjs). */
async function loadedNow(file: string, n: number): Promise<Loaded> {
  const token = `ask-${n}`;
  writeFileSync(`${file}.req`, token);
  let got: (Loaded & { token: string }) | null = null;
  await waitUntil(`the daemon's module list (answer to ${token})`, () => {
    if (!existsSync(file)) return false;
    got = JSON.parse(readFileSync(file, 'utf8')) as Loaded & { token: string };
    return got.token === token;
  }, 10_000);
  return got!;
}

/** A daemon started with the module probe; NODE_OPTIONS reaches the daemon through the harness's environment. */
async function probedDaemon(): Promise<{ d: TestDaemon; file: string }> {
  const before = process.env['NODE_OPTIONS'];
  const before2 = process.env['BATON_TEST_MODULES_FILE'];
  let d: TestDaemon;
  try {
    process.env['NODE_OPTIONS'] = `${before ?? ''} --import=${PROBE}`.trim();
    d = await createDaemon({ start: false });
    process.env['BATON_TEST_MODULES_FILE'] = path.join(d.dir, 'modules.json');
    await d.start();
  } finally {
    if (before === undefined) delete process.env['NODE_OPTIONS'];
    else process.env['NODE_OPTIONS'] = before;
    if (before2 === undefined) delete process.env['BATON_TEST_MODULES_FILE'];
    else process.env['BATON_TEST_MODULES_FILE'] = before2;
  }
  return { d, file: path.join(d.dir, 'modules.json') };
}

const yamlModules = (l: Loaded): string[] => l.modules.filter((u) => u.includes('/node_modules/yaml/'));
/** Node's own bundled undici (loaded by an ES import of node:http, whose WebSocket getters pull it in): baton never uses it. */
const bundledUndici = (l: Loaded): string[] => l.builtins.filter((b) => b.includes('internal/deps/undici'));
/** Node's TLS, HTTPS and HTTP/2 modules: a daemon without a TLS listener, ACME or a TCP control listener needs none of them. */
const tlsModules = (l: Loaded): string[] => l.builtins.filter((b) => /^NativeModule (tls|_tls_wrap|https|http2|internal\/http2\/.*)$/.test(b));

test('the daemon never loads the YAML parser nor Node\'s bundled undici, and without TLS no TLS module: not at start, not serving, not on reload (a child process reads the config)', async (t) => {
  const { d, file } = await probedDaemon();
  t.after(() => d.cleanup());
  const atStart = await loadedNow(file, 1);
  // The probe sees the daemon's own modules load: a list that misses them would prove nothing.
  assert.ok(atStart.modules.some((u) => /\/daemon\/daemon\.(ts|js)$/.test(u)), `the probe saw no daemon module: ${atStart.modules.slice(0, 5).join(', ')}`);
  assert.deepEqual(yamlModules(atStart), []);
  assert.deepEqual(bundledUndici(atStart), []);
  assert.deepEqual(tlsModules(atStart), []);

  const dep = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(dep.code, 0, dep.stdout + dep.stderr);
  const r = await request(`${d.url}/`, { headers: { host: 'localhost' } });
  assert.equal(r.statusCode, 200);
  assert.equal((await r.body.text()).trim(), 'v1');

  // A reload reads the changed config (in the child): the second service appears.
  await d.writeConfig([serviceYaml(), serviceYaml({ name: 'api', instances: 1 })].join('\n'));
  const reload = await d.cli(['reload']);
  assert.equal(reload.code, 0, reload.stdout + reload.stderr);
  const st = await d.status();
  assert.deepEqual(st.services.map((s: { name: string }) => s.name).sort(), ['api', 'web']);

  const after = await loadedNow(file, 2);
  assert.deepEqual(yamlModules(after), []);
  assert.deepEqual(bundledUndici(after), []);
  assert.deepEqual(tlsModules(after), []);
});
