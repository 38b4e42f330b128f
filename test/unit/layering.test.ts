// The dependency rule of docs/ARCHITECTURE.md, checked: every import in src/
// goes to the importer's own folder or to one its row in the table names.
// The table is read from the document, so the rule and the check are one text.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');
const src = path.join(root, 'src');

/** Folder → folders it may import from, as the table in docs/ARCHITECTURE.md says. */
function readRule(): Map<string, Set<string>> {
  const doc = readFileSync(path.join(root, 'docs/ARCHITECTURE.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## The dependency rule'));
  assert.ok(section.length > 0, 'docs/ARCHITECTURE.md has no "## The dependency rule" section');
  const rule = new Map<string, Set<string>>();
  for (const m of section.matchAll(/^\| `([a-z-]+)` \| ([^|]+) \|$/gm)) {
    const allowed = m[2]!.trim() === 'nothing' ? [] : m[2]!.split(',').map((s) => s.trim());
    rule.set(m[1]!, new Set(allowed));
  }
  assert.ok(rule.size > 0, 'no rows found in the dependency table of docs/ARCHITECTURE.md');
  return rule;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => path.join(e.parentPath, e.name));
}

/** Every module specifier in a file: static imports, re-exports, dynamic import() with a literal. */
export function specifiers(text: string): string[] {
  const found: string[] = [];
  const patterns = [
    /^\s*import\s+(?:type\s+)?[^'"`;]*?\bfrom\s+['"]([^'"]+)['"]/gm, // import x from '…' (multi-line lists too)
    /^\s*import\s+['"]([^'"]+)['"]/gm, // import '…' (side effects)
    /^\s*export\s+(?:type\s+)?(?:\*|\{[^}]*\})(?:\s+as\s+\w+)?\s+from\s+['"]([^'"]+)['"]/gm, // export … from '…'
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g, // import('…')
  ];
  for (const re of patterns) for (const m of text.matchAll(re)) found.push(m[1]!);
  return found;
}

test('the specifier scanner sees every form of import', () => {
  const text = [
    "import { a,\n  b } from '../x/one.ts';",
    "import type { T } from '../x/two.ts';",
    "import '../x/three.ts';",
    "export { c } from '../x/four.ts';",
    "export type { D } from '../x/five.ts';",
    "export * from '../x/six.ts';",
    "const m = await import('../x/seven.ts');",
  ].join('\n');
  assert.deepEqual(specifiers(text).sort(), ['../x/five.ts', '../x/four.ts', '../x/one.ts', '../x/seven.ts', '../x/six.ts', '../x/three.ts', '../x/two.ts']);
});

test('every import in src/ keeps the dependency rule of docs/ARCHITECTURE.md', () => {
  const rule = readRule();
  const broken: string[] = [];
  const folders = new Set(readdirSync(src, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name));
  for (const f of folders) if (!rule.has(f)) broken.push(`src/${f}/ has no row in the dependency table of docs/ARCHITECTURE.md`);
  for (const file of sourceFiles(src)) {
    const rel = path.relative(src, file);
    const from = rel.split(path.sep)[0]!;
    const allowed = rule.get(from);
    if (!allowed) continue; // reported above
    for (const spec of specifiers(readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue; // node: and npm packages
      const target = path.relative(src, path.resolve(path.dirname(file), spec));
      if (target.startsWith('..')) {
        broken.push(`src/${rel} imports '${spec}', outside src/`);
        continue;
      }
      const to = target.split(path.sep)[0]!;
      if (to === from || allowed.has(to)) continue;
      const may = allowed.size ? [...allowed].join(', ') : 'nothing';
      broken.push(`src/${rel} imports '${spec}' (${to}), but ${from} may import only from: ${may}`);
    }
  }
  assert.deepEqual(broken, [], `imports that break the dependency rule (docs/ARCHITECTURE.md, "The dependency rule"):\n  ${broken.join('\n  ')}`);
});

test('the dependency rule has no cycles', () => {
  const rule = readRule();
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (n: string, trail: string[]): void => {
    if (state.get(n) === 'done') return;
    assert.notEqual(state.get(n), 'visiting', `cycle in the dependency table: ${[...trail, n].join(' → ')}`);
    state.set(n, 'visiting');
    for (const m of rule.get(n) ?? []) {
      assert.ok(rule.has(m), `the row of ${n} names ${m}, which has no row`);
      visit(m, [...trail, n]);
    }
    state.set(n, 'done');
  };
  for (const n of rule.keys()) visit(n, []);
});
