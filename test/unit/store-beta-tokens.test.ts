// Used beta link tokens in the store: claimed once, across reopening the file,
// and expired ones swept.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Store } from '../../src/store/index.ts';

function tempFile(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'baton-store-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'baton.db');
}

test('a beta token is claimed once, also after the store is reopened', (t) => {
  const file = tempFile(t);
  const clock = { t: 1000 };
  const a = Store.open(file, { now: () => clock.t });
  assert.equal(a.claimBetaToken('tok1', 50_000), true);
  assert.equal(a.claimBetaToken('tok1', 50_000), false);
  a.close();
  const b = Store.open(file, { now: () => clock.t });
  t.after(() => b.close());
  assert.equal(b.claimBetaToken('tok1', 50_000), false, 'still used after reopening');
  assert.equal(b.claimBetaToken('tok2', 50_000), true);
});

test('expired tokens are swept when a new one is claimed', (t) => {
  const file = tempFile(t);
  const clock = { t: 1000 };
  const store = Store.open(file, { now: () => clock.t });
  t.after(() => store.close());
  store.claimBetaToken('old', 2000);
  clock.t = 3000;
  store.claimBetaToken('new', 10_000);
  const db = new DatabaseSync(file);
  t.after(() => db.close());
  const ids = db.prepare('SELECT id FROM beta_tokens_used ORDER BY id').all().map((r) => r['id']);
  assert.deepEqual(ids, ['new']);
});
