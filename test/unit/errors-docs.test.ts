// docs/errors.md stays in step with src/core/errors.ts: every error code with
// its HTTP status and exit status, and every exit status of the CLI.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERRORS, EXIT, BatonError } from '../../src/core/errors.ts';
import { proxyErrorCodes } from '../../src/proxy/error-page.ts';

const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');

function rows(section: string): string[][] {
  const text = doc.slice(doc.indexOf(section));
  const table = text.slice(0, text.indexOf('\n\n', text.indexOf('|---')) + 1 || undefined);
  return table.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('|---')).slice(1).map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
}

test('every error code has a row in docs/errors.md with its HTTP and exit status', () => {
  const documented = new Map(rows('## Error codes').map(([code, http, exit]) => [code!.replace(/`/g, ''), { http: Number(http), exit: Number(exit) }]));
  for (const [code, e] of Object.entries(ERRORS)) {
    assert.deepEqual(documented.get(code), { http: e.http, exit: e.exit }, `docs/errors.md row for ${code}`);
  }
  assert.deepEqual([...documented.keys()].filter((c) => !(c in ERRORS)), [], 'codes documented but not in src/core/errors.ts');
});

test('every exit status of the CLI is documented, and only those', () => {
  const documented = rows('## Exit statuses of the CLI').map(([status]) => Number(status)).sort((a, b) => a - b);
  assert.deepEqual(documented, Object.values(EXIT).sort((a, b) => a - b));
});

test('a BatonError carries its code\'s HTTP and exit status', () => {
  assert.equal(new BatonError('SERVICE_UNKNOWN', 'x').httpStatus, 404);
  assert.equal(new BatonError('USAGE', 'x').exitStatus, EXIT.USAGE);
  assert.equal(new BatonError('DAEMON_UNREACHABLE', 'x').exitStatus, EXIT.UNREACHABLE);
  assert.equal(new BatonError('DEPLOY_FAILED', 'x').exitStatus, EXIT.FAILED);
});

test('every answer of the proxy (x-baton-error) has a row in docs/errors.md with its status', () => {
  const documented = new Map(rows('## Answers of the proxy').map(([code, status]) => [code!.replace(/`/g, ''), Number(status)]));
  for (const { code, status } of proxyErrorCodes()) assert.equal(documented.get(code), status, `docs/errors.md row for ${code}`);
  // The maintenance page is the operator's HTML, not one of the pages of error-page.ts.
  const known = new Set([...proxyErrorCodes().map((c) => c.code as string), 'maintenance']);
  assert.deepEqual([...documented.keys()].filter((c) => !known.has(c)), [], 'codes documented but not answered by the proxy');
});
