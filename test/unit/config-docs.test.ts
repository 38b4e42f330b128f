// docs/config.md stays in step with the schema: every key is documented, and
// the error example is what the loader really prints.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseConfig } from '../../src/config/index.ts';
import { knownKeysAt } from '../../src/config/schema.ts';
import { BatonError } from '../../src/core/errors.ts';

const doc = readFileSync(new URL('../../docs/config.md', import.meta.url), 'utf8');

test('every config key has a row in docs/config.md', () => {
  const paths = [[], ['listen', 0], ['proxy'], ['proxy', 'access_log'], ['dashboard'], ['control'], ['control', 'remote'], ['tls'], ['tls', 'acme'], ['tls', 'certificates', 0], ['services', 'x'], ['services', 'x', 'health'], ['services', 'x', 'targets', 'y'], ['services', 'x', 'upstream'], ['services', 'x', 'git'], ['services', 'x', 'hooks'], ['services', 'x', 'hooks', 'build'], ['services', 'x', 'canary'], ['services', 'x', 'canary', 'analysis'], ['services', 'x', 'canary', 'sticky'], ['services', 'x', 'canary', 'beta'], ['services', 'x', 'maintenance'], ['services', 'x', 'pause'], ['services', 'x', 'limits']];
  for (const path of paths) {
    for (const key of knownKeysAt(path)) assert.ok(doc.includes(`| \`${key}\` |`), `docs/config.md has no row for ${key}`);
  }
});

test('the error example in docs/config.md is what the loader prints', () => {
  const section = doc.slice(doc.indexOf('## Errors look like this'));
  const [, yamlText, output] = /```yaml\n([\s\S]*?)```[\s\S]*?```\n([\s\S]*?)```/.exec(section) ?? [];
  assert.ok(yamlText !== undefined && output !== undefined, 'example not found');
  assert.throws(() => parseConfig(yamlText, 'baton.yaml'), (err) => {
    assert.ok(err instanceof BatonError);
    assert.equal([err.message, ...err.details].join('\n') + '\n', output);
    return true;
  });
});
