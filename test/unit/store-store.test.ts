// Store: migrations, pragmas, and a round trip through every method.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Store, SCHEMA_VERSION, type InstanceRow } from '../../src/store/index.ts';
import { BatonError } from '../../src/core/errors.ts';

function tempFile(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'baton-store-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'nested', 'baton.db');
}

function openStore(t: TestContext, file = tempFile(t), clock = { t: 1000 }): Store {
  const store = Store.open(file, { now: () => clock.t });
  t.after(() => store.close());
  return store;
}

test('open creates the directory, migrates once, and is idempotent', (t) => {
  const file = tempFile(t);
  Store.open(file).close();
  Store.open(file).close();
  const db = new DatabaseSync(file);
  t.after(() => db.close());
  const rows = db.prepare('SELECT version FROM schema_migrations ORDER BY version').all();
  assert.deepEqual(rows.map((r) => r['version']), Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
});

test('WAL mode is on', (t) => {
  const file = tempFile(t);
  openStore(t, file);
  const db = new DatabaseSync(file);
  t.after(() => db.close());
  assert.equal(db.prepare('PRAGMA journal_mode').get()?.['journal_mode'], 'wal');
});

test('a database from a newer baton is refused', (t) => {
  const file = tempFile(t);
  Store.open(file).close();
  const db = new DatabaseSync(file);
  db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(SCHEMA_VERSION + 1, 'future', 0);
  db.close();
  assert.throws(() => Store.open(file), (err) => err instanceof BatonError && err.code === 'STORE_UNAVAILABLE');
});

test('an unopenable path is STORE_UNAVAILABLE', (t) => {
  const notADir = tempFile(t).replace(/nested.*$/, 'plain-file');
  writeFileSync(notADir, '');
  const file = join(notADir, 'baton.db');
  assert.throws(
    () => Store.open(file),
    (err) => err instanceof BatonError && err.code === 'STORE_UNAVAILABLE' && err.message.startsWith(`${file}: `),
  );
});

test('services: get, upsert, clear', (t) => {
  const clock = { t: 1000 };
  const store = openStore(t, tempFile(t), clock);
  assert.equal(store.getService('web'), null);
  store.setServiceReleases('web', 'r1', null);
  assert.deepEqual(store.getService('web'), { name: 'web', currentRelease: 'r1', standbyRelease: null, maintenance: null, paused: false, updatedAt: 1000 });
  clock.t = 2000;
  store.setServiceReleases('web', 'r2', 'r1');
  assert.deepEqual(store.getService('web'), { name: 'web', currentRelease: 'r2', standbyRelease: 'r1', maintenance: null, paused: false, updatedAt: 2000 });
  store.setServiceReleases('web', null, null);
  assert.deepEqual(store.getService('web'), { name: 'web', currentRelease: null, standbyRelease: null, maintenance: null, paused: false, updatedAt: 2000 });
  store.setServiceMaintenance('web', { message: 'back soon', since: 5 });
  store.setServicePaused('web', true);
  assert.deepEqual([store.getService('web')?.maintenance, store.getService('web')?.paused], [{ message: 'back soon', since: 5 }, true]);
  store.setServiceReleases('web', 'r3', null);
  assert.deepEqual(store.getService('web')?.maintenance, { message: 'back soon', since: 5 }, 'modes survive a release change');
  store.setServiceMaintenance('web', null);
  store.setServicePaused('web', false);
  assert.deepEqual([store.getService('web')?.maintenance, store.getService('web')?.paused], [null, false]);
  store.setServicePaused('new', true);
  assert.deepEqual(store.getService('new')?.currentRelease, null, 'a mode on an unknown service creates its row');
});

test('releases: add, get, list newest first, mark deployed, delete', (t) => {
  const store = openStore(t);
  const base = { service: 'web', sourcePath: '/src', dir: '/state/releases/x' };
  store.addRelease({ ...base, id: 'r1', name: 'one', createdAt: 100 });
  store.addRelease({ ...base, id: 'r2', name: 'two', createdAt: 200 });
  store.addRelease({ ...base, id: 'r3', name: 'three', createdAt: 200 }); // same ms: insertion order breaks the tie
  store.addRelease({ ...base, id: 'a1', name: 'api', service: 'api', createdAt: 300 });
  const fresh = { kind: 'dir', git: null, buildStatus: 'none', buildMs: null, builtAt: null, lastDeployedAt: null };
  assert.deepEqual(store.getRelease('web', 'r1'), { ...base, ...fresh, id: 'r1', name: 'one', createdAt: 100 });
  assert.equal(store.getRelease('web', 'nope'), null);
  assert.equal(store.getRelease('api', 'r1'), null, 'release ids are per service');
  store.addRelease({ ...base, id: 'r1', name: 'same id, other service', service: 'api', createdAt: 300 });
  assert.deepEqual(store.listReleases('web').map((r) => r.id), ['r3', 'r2', 'r1']);
  store.markReleaseDeployed('web', 'r2', 555);
  assert.equal(store.getRelease('web', 'r2')?.lastDeployedAt, 555);
  assert.throws(() => store.markReleaseDeployed('web', 'nope', 1), (err) => err instanceof BatonError && err.code === 'RELEASE_UNKNOWN');
  store.setReleaseBuild('web', 'r2', 'ok', 1234, 600);
  assert.deepEqual([store.getRelease('web', 'r2')?.buildStatus, store.getRelease('web', 'r2')?.buildMs], ['ok', 1234]);
  const git = { commit: 'a'.repeat(40), ref: 'main', author: 'A <a@x>', message: 'subject' };
  store.addRelease({ ...base, id: 'aaaaaaaaaaaa', name: 'main', kind: 'git', git, createdAt: 700 });
  assert.deepEqual(store.getRelease('web', 'aaaaaaaaaaaa')?.git, git);
  store.deleteRelease('web', 'aaaaaaaaaaaa');
  store.deleteRelease('web', 'r2');
  assert.deepEqual(store.listReleases('web').map((r) => r.id), ['r3', 'r1']);
  assert.throws(() => store.addRelease({ ...base, id: 'r1', name: 'dup', createdAt: 1 }));
});

test('deployments: create, update, get, list, active', (t) => {
  const clock = { t: 5000 };
  const store = openStore(t, tempFile(t), clock);
  const { id: id1, seq: seq1 } = store.createDeployment({ service: 'web', kind: 'deploy', fromRelease: null, toRelease: 'r1', actor: 'alice' });
  assert.equal(seq1, 1);
  assert.deepEqual(store.getDeployment(id1), {
    id: id1, seq: 1, service: 'web', kind: 'deploy', fromRelease: null, toRelease: 'r1', actor: 'alice',
    state: 'planned', startedAt: 5000, finishedAt: null, error: null, requests: 0, failed: 0,
  });
  store.updateDeployment(id1, { state: 'starting' });
  store.updateDeployment(id1, { requests: 10, failed: 1, error: 'boom' });
  let d = store.getDeployment(id1);
  assert.equal(d?.state, 'starting'); // an absent field is kept
  assert.equal(d?.requests, 10);
  assert.equal(d?.error, 'boom');
  store.updateDeployment(id1, { state: 'done', finishedAt: 6000, error: null }); // null clears
  d = store.getDeployment(id1);
  assert.equal(d?.state, 'done');
  assert.equal(d?.finishedAt, 6000);
  assert.equal(d?.error, null);
  assert.equal(d?.failed, 1);
  assert.throws(() => store.updateDeployment(9999, { state: 'done' }), (err) => err instanceof BatonError && err.code === 'INTERNAL');

  const { id: id2 } = store.createDeployment({ service: 'web', kind: 'rollback', fromRelease: 'r2', toRelease: 'r1', actor: 'bob' });
  const { id: id3 } = store.createDeployment({ service: 'api', kind: 'restart', fromRelease: 'a1', toRelease: 'a1', actor: 'cli' });
  const { id: id4 } = store.createDeployment({ service: 'web', kind: 'deploy', fromRelease: 'r1', toRelease: 'r3', actor: 'cli' });
  // Numbered per service: web 1, 2, 3 and api 1, whatever the global ids.
  assert.deepEqual(store.listDeployments('web', 10).map((x) => x.seq), [3, 2, 1]);
  assert.deepEqual(store.listDeployments('api', 10).map((x) => x.seq), [1]);
  assert.equal(store.getDeploymentBySeq('web', 3)?.id, id4);
  assert.equal(store.getDeploymentBySeq('api', 1)?.id, id3);
  assert.equal(store.getDeploymentBySeq('api', 2), null);
  store.updateDeployment(id2, { state: 'rolled_back' });
  store.updateDeployment(id3, { state: 'aborting' });
  assert.deepEqual(store.listDeployments('web', 10).map((x) => x.id), [id4, id2, id1]);
  assert.deepEqual(store.listDeployments('web', 2).map((x) => x.id), [id4, id2]);
  assert.deepEqual(store.activeDeployments().map((x) => x.id), [id3, id4]);
  store.updateDeployment(id4, { state: 'failed' });
  store.updateDeployment(id3, { state: 'failed' });
  assert.deepEqual(store.activeDeployments(), []);
  assert.equal(store.getDeployment(12345), null);
});

test('migration 3 numbers existing deployments within their service, in order', (t) => {
  const file = tempFile(t);
  // A database as baton left it before migration 3: two services' deployments interleaved.
  Store.open(file).close();
  const db = new DatabaseSync(file);
  let ids: number[];
  try {
    db.exec('DROP INDEX deployments_by_service_seq; ALTER TABLE deployments DROP COLUMN seq; DELETE FROM schema_migrations WHERE version >= 3');
    const insert = db.prepare(`INSERT INTO deployments (service, kind, to_release, actor, state, started_at) VALUES (?, 'deploy', 'r', 'a', 'done', 0) RETURNING id`);
    const order = ['web', 'api', 'web', 'web', 'api', 'worker', 'web'];
    ids = order.map((s) => Number(insert.get(s)?.['id']));
    db.prepare(`INSERT INTO deployment_events (deployment_id, step, message, at) VALUES (?, 'done', 'kept', 1)`).run(ids[3]!);
  } finally {
    db.close();
  }

  const store = openStore(t, file);
  const seqOf = (service: string): Array<[number, number]> => store.listDeployments(service, 100).map((d) => [d.id, d.seq]);
  assert.deepEqual(seqOf('web'), [[ids[6]!, 4], [ids[3]!, 3], [ids[2]!, 2], [ids[0]!, 1]]);
  assert.deepEqual(seqOf('api'), [[ids[4]!, 2], [ids[1]!, 1]]);
  assert.deepEqual(seqOf('worker'), [[ids[5]!, 1]]);
  assert.equal(store.listDeploymentEvents(ids[3]!)[0]?.message, 'kept', 'events still belong to their deployment');
  // New deployments continue each service's numbering; global ids stay unique.
  const next = store.createDeployment({ service: 'api', kind: 'deploy', fromRelease: null, toRelease: 'r', actor: 'a' });
  assert.equal(next.seq, 3);
  assert.ok(next.id > Math.max(...ids));
  assert.equal(store.createDeployment({ service: 'new', kind: 'deploy', fromRelease: null, toRelease: 'r', actor: 'a' }).seq, 1);
});

test('deployment events: oldest first, defaults, foreign key', (t) => {
  const store = openStore(t);
  const { id } = store.createDeployment({ service: 'web', kind: 'deploy', fromRelease: null, toRelease: 'r1', actor: 'a' });
  store.addDeploymentEvent({ deploymentId: id, step: 'starting', message: 'spawned 2', at: 10 });
  store.addDeploymentEvent({ deploymentId: id, step: 'verifying', message: 'slow', at: 20, durationMs: 1500, level: 'warn' });
  assert.deepEqual(
    store.listDeploymentEvents(id).map(({ id: _, ...rest }) => rest),
    [
      { deploymentId: id, step: 'starting', message: 'spawned 2', at: 10, durationMs: null, level: 'info' },
      { deploymentId: id, step: 'verifying', message: 'slow', at: 20, durationMs: 1500, level: 'warn' },
    ],
  );
  assert.deepEqual(store.listDeploymentEvents(id + 1), []);
  assert.throws(() => store.addDeploymentEvent({ deploymentId: id + 1, step: 'x', message: 'y', at: 1 }));
});

test('instances: upsert, set state, list, delete', (t) => {
  const store = openStore(t);
  const web1: InstanceRow = {
    id: 'web-1', service: 'web', release: 'r1', releaseDir: '/rel/r1', pid: 4242, startTime: '123456',
    port: 40001, logFile: '/logs/web-1.log', state: 'starting', createdAt: 1,
  };
  const api1: InstanceRow = { ...web1, id: 'api-1', service: 'api', port: 40002, createdAt: 2 };
  store.upsertInstance(web1);
  store.upsertInstance(api1);
  store.upsertInstance({ ...web1, pid: 4343, startTime: '999' });
  store.setInstanceState('web-1', 'healthy');
  assert.deepEqual(store.listInstances('web'), [{ ...web1, pid: 4343, startTime: '999', state: 'healthy' }]);
  assert.deepEqual(store.listInstances().map((i) => i.id), ['web-1', 'api-1']);
  assert.throws(() => store.setInstanceState('nope', 'x'), (err) => err instanceof BatonError && err.code === 'INTERNAL');
  store.deleteInstance('web-1');
  store.deleteInstance('web-1'); // deleting twice is harmless
  assert.deepEqual(store.listInstances().map((i) => i.id), ['api-1']);
});

test('transaction commits together or not at all', (t) => {
  const store = openStore(t);
  assert.throws(() =>
    store.transaction(() => {
      store.setServiceReleases('web', 'r1', null);
      throw new Error('abort');
    }),
  );
  assert.equal(store.getService('web'), null);
  store.transaction(() => {
    store.setServiceReleases('web', 'r1', null);
    store.transaction(() => store.setServiceReleases('api', 'a1', null)); // nested joins the outer
  });
  assert.equal(store.getService('api')?.currentRelease, 'a1');
});

test('data survives close and reopen', (t) => {
  const file = tempFile(t);
  const a = Store.open(file, { now: () => 7 });
  a.setServiceReleases('web', 'r1', 'r0');
  a.addRelease({ id: 'r1', service: 'web', name: 'one', sourcePath: '/s', dir: '/d', createdAt: 1 });
  const { id } = a.createDeployment({ service: 'web', kind: 'deploy', fromRelease: 'r0', toRelease: 'r1', actor: 'x' });
  a.updateDeployment(id, { state: 'shifting' });
  a.addDeploymentEvent({ deploymentId: id, step: 'shifting', message: 'm', at: 3 });
  a.close();
  a.close(); // closing twice is harmless
  const b = openStore(t, file);
  assert.equal(b.getService('web')?.standbyRelease, 'r0');
  assert.equal(b.getRelease('web', 'r1')?.name, 'one');
  assert.deepEqual(b.activeDeployments().map((d) => [d.id, d.state]), [[id, 'shifting']]);
  assert.equal(b.listDeploymentEvents(id).length, 1);
});
