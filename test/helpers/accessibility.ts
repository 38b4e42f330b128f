// axe-core's WCAG 2 A and AA rules, run in a page the browser tests drive.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { Page } from 'playwright-core';

let axeSource: string | null = null;

/** No WCAG 2.0/2.1 A or AA violation on the page as it is now (run through the DevTools protocol: the page's CSP stays on). */
export async function assertAccessible(p: Page, what: string): Promise<void> {
  axeSource ??= await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  await p.evaluate(`${axeSource}\n;undefined`);
  const violations = await p.evaluate<string[]>(`axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
    .then((r) => r.violations.map((v) => v.id + ': ' + v.help + ' (' + v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ') + ')'))`);
  assert.deepEqual(violations, [], `accessibility problems on ${what}:\n${violations.join('\n')}`);
}
