// The names `env:` refuses as "set by baton" are exactly the ones baton sets:
// read from the code that sets them, so a new variable cannot be forgotten.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { HOOK_ENV, INSTANCE_ENV } from '../../src/config/schema.ts';

/** Names set as object-literal keys (`NAME: value`, the environment given to a spawn) in a folder of src/. */
function setIn(folder: string): string[] {
  const dir = new URL(`../../src/${folder}/`, import.meta.url);
  const text = readdirSync(dir).filter((f) => f.endsWith('.ts')).map((f) => readFileSync(new URL(f, dir), 'utf8')).join('\n');
  return [...new Set([...text.matchAll(/^\s+(PORT|BATON_[A-Z_]+):/gm), ...text.matchAll(/\{\s*(BATON_[A-Z_]+):/g)].map((m) => m[1]!))].sort();
}

test('INSTANCE_ENV is what the supervisor sets for an instance', () => {
  assert.deepEqual(setIn('supervisor'), [...INSTANCE_ENV].sort());
});

test('HOOK_ENV is what the deployer sets for a hook', () => {
  assert.deepEqual(setIn('deploy'), [...HOOK_ENV].sort());
});
