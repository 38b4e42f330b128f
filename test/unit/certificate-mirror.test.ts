// The certificate store's side of proxy workers (src/tls/certificates.ts): the
// set a control plane exports is served the same way by a worker's store that
// mirrors it (which pair wins a name, which is the default), every change is
// announced, and `baton reload` reads the files again (recheck) without a
// watcher.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renameSync, writeFileSync } from 'node:fs';
import { CertificateStore } from '../../src/tls/index.ts';
import { silentLogger } from '../../src/core/log.ts';
import { makeCa } from '../fixtures/tls-certs.ts';

test('a mirror of the exported set picks the same certificate per name and the same default; changes are announced', async (t) => {
  const ca = makeCa(t);
  const a = ca.write('a', ['a.test', '*.wild.test']);
  const b = ca.write('b', ['b.test', 'shared.test']);
  const issued = ca.issue(['shared.test']);
  const store = new CertificateStore({ logger: silentLogger });
  t.after(() => store.close());
  let changes = 0;
  store.onChange(() => changes++);
  await store.loadFiles([
    { hosts: ['a.test', '*.wild.test'], certFile: a.certFile, keyFile: a.keyFile, isDefault: false },
    { hosts: ['b.test', 'shared.test'], certFile: b.certFile, keyFile: b.keyFile, isDefault: true },
  ]);
  // An issued certificate wins a name a file also has (it is the newer, automatic one).
  store.setIssued('acme', ['shared.test'], { cert: issued.cert, key: issued.key });
  assert.equal(changes, 2);
  const mirror = new CertificateStore({ logger: silentLogger });
  t.after(() => mirror.close());
  let mirrorDefaultChanges = 0;
  mirror.onDefaultChange(() => mirrorDefaultChanges++);
  mirror.mirror(store.exportSet());
  for (const name of ['a.test', 'x.wild.test', 'b.test', 'shared.test', 'unknown.test']) {
    assert.equal(mirror.certificateFor(name)?.serialNumber, store.certificateFor(name)?.serialNumber, name);
  }
  assert.equal(mirror.certificateFor('shared.test')?.serialNumber, issued.serial);
  assert.equal(mirror.certificateFor('unknown.test')?.serialNumber, b.serial, 'the default');
  assert.equal(mirror.defaultPair()?.cert, store.defaultPair()?.cert);
  assert.equal(mirrorDefaultChanges, 1);
  // The same set again: nothing new to serve, the default unchanged.
  mirror.mirror(store.exportSet());
  assert.equal(mirrorDefaultChanges, 1);
  assert.throws(() => mirror.mirror([{ hosts: ['a.test'], pair: { cert: a.certFile, key: 'not a key' }, isDefault: true }]), /cannot use this certificate/);
  assert.equal(mirror.certificateFor('a.test')?.serialNumber, a.serial, 'a set that does not load changes nothing');
});

test('recheck (baton reload) reads the files again without a watcher: a replacement is served, an unchanged pair changes nothing', async (t) => {
  const ca = makeCa(t);
  const a = ca.write('a', ['a.test']);
  const store = new CertificateStore({ logger: silentLogger });
  t.after(() => store.close());
  await store.loadFiles([{ hosts: ['a.test'], certFile: a.certFile, keyFile: a.keyFile, isDefault: true }]);
  let changes = 0;
  store.onChange(() => changes++);
  await store.recheck();
  assert.equal(changes, 0);
  const next = ca.issue(['a.test']);
  writeFileSync(`${a.keyFile}.new`, next.key);
  writeFileSync(`${a.certFile}.new`, next.cert);
  renameSync(`${a.keyFile}.new`, a.keyFile);
  renameSync(`${a.certFile}.new`, a.certFile);
  assert.equal(store.certificateFor('a.test')?.serialNumber, a.serial, 'not watched: still the old one');
  await store.recheck();
  assert.equal(store.certificateFor('a.test')?.serialNumber, next.serial);
  assert.equal(changes, 1);
});
