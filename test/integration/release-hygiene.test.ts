// Release hygiene (issue 8): an unchanged directory deployed again reuses its
// release (content-addressed ids); keep_releases is honoured exactly, failed
// deploys included, and no stray directory stays; the per-release figures of
// status (and /metrics, the same data) name only releases with instances.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { createDaemon, serviceYaml, type TestDaemon } from '../helpers/daemon.ts';

let d: TestDaemon;
before(async () => {
  d = await createDaemon({ services: serviceYaml({ extra: 'keep_releases: 1\nstandby: 5m' }) });
});
after(async () => {
  await d?.cleanup();
});

const releases = async (): Promise<{ id: string }[]> => JSON.parse((await d.cli(['releases', 'web', '--json'])).stdout);
const onDisk = (): string[] => readdirSync(path.join(d.dir, 'state', 'releases', 'web')).sort();

async function deploy(dir: string, ok = true): Promise<void> {
  const r = await d.cli(['deploy', 'web', dir]);
  assert.equal(r.code === 0, ok, `deploy ${dir}: ${r.stdout}\n${r.stderr}`);
}

test('an unchanged directory deployed again reuses its release', async () => {
  const v1 = await d.release('v1');
  await deploy(v1);
  const first = (await d.status('web')).services[0].currentRelease as string;
  assert.match(first, /^v1-1-[0-9a-f]{12}$/);
  const again = await d.cli(['deploy', 'web', v1]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /already on disk: not copying again/);
  assert.equal((await d.status('web')).services[0].currentRelease, first);
  assert.deepEqual((await releases()).map((r) => r.id), [first]);
  assert.deepEqual(onDisk(), [first]);
});

test('keep_releases is honoured exactly, after good and failed deploys', async () => {
  for (const v of ['v2', 'v3', 'v4']) await deploy(await d.release(v));
  const expectKept = async (why: string): Promise<void> => {
    const svc = (await d.status('web')).services[0];
    const protectedIds = new Set([svc.currentRelease, svc.standbyRelease].filter(Boolean));
    const kept = (await releases()).map((r) => r.id).sort();
    // keep_releases: 1 beyond the current and the standby release.
    assert.equal(kept.length, protectedIds.size + 1, `${why}: ${kept.join(', ')}`);
    for (const id of protectedIds) assert.ok(kept.includes(id), `${why}: ${id} is kept`);
    assert.deepEqual(onDisk(), kept, `${why}: the directories on disk are the kept releases, no more`);
  };
  await expectKept('after three more deploys');
  await deploy(await d.release('v5', { APP_CRASH_ON_START: '1' }), false);
  await expectKept('after a failed deploy');
  // A directory left by a crash mid-copy is removed by the next deploy.
  await mkdir(path.join(d.dir, 'state', 'releases', 'web', 'v9-000000000000.partial'));
  await deploy(await d.release('v6'));
  await expectKept('after a stray directory');
});

test('status names only releases that have instances', async () => {
  for (let i = 0; i < 3; i++) await fetch(d.url).then((r) => r.text());
  const svc = (await d.status('web')).services[0];
  const live = new Set(svc.instances.map((i: { release: string }) => i.release));
  live.add('-'); // requests that reached no release
  const named = svc.releases.map((r: { release: string }) => r.release);
  assert.ok(named.includes(svc.currentRelease), `the current release has figures: ${named.join(', ')}`);
  for (const r of named) assert.ok(live.has(r), `status names ${r}, which has no instance (live: ${[...live].join(', ')})`);
});
