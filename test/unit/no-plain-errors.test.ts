// No plain Error on a path a user can reach: every error baton throws carries
// a code (src/core/errors.ts, docs/errors.md). The few plain errors left are
// handed to a socket or an AbortController inside the proxy, never shown.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

const src = path.resolve(import.meta.dirname, '../../src');

/** file → the exact expressions allowed there, and why. */
const ALLOWED: Record<string, { text: string; why: string }[]> = {
  'proxy/websocket.ts': [{ text: "new Error('connect timeout')", why: 'destroys an upstream socket; the client gets a 502' }],
  'proxy/forwarder.ts': [{ text: 'new Error(String(err))', why: 'the reason of an AbortController; the client gets a 502' }],
};

test('src/ throws BatonError, never a plain Error', () => {
  const found: string[] = [];
  for (const e of readdirSync(src, { withFileTypes: true, recursive: true })) {
    if (!e.isFile() || !e.name.endsWith('.ts')) continue;
    const file = path.relative(src, path.join(e.parentPath, e.name));
    const lines = readFileSync(path.join(src, file), 'utf8').split('\n');
    lines.forEach((line, i) => {
      for (const m of line.matchAll(/new (?:Type|Range|Syntax)?Error\([^)]*\)?/g)) {
        if ((ALLOWED[file] ?? []).some((a) => line.includes(a.text))) continue;
        found.push(`src/${file}:${i + 1}: ${m[0]}`);
      }
    });
  }
  assert.deepEqual(found, [], `plain errors (use BatonError with a code from src/core/errors.ts):\n  ${found.join('\n  ')}`);
});
