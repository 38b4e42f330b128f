// Where a YAML syntax error starts. The parser notices an unclosed quote or
// flow collection (`{`, `[`) only at the end of the file, and reports it
// there; the operator needs the line where the quote or bracket was opened.

import { Parser } from 'yaml';

export interface SyntaxProblem {
  offset: number;
  message: string;
}

interface CstNode {
  type?: string;
  offset?: number;
  source?: string;
  start?: { source?: string };
  end?: { source?: string }[];
}

/** The openings the parser never saw closed: quoted scalars and flow collections. */
function unclosed(text: string): SyntaxProblem[] {
  const found: SyntaxProblem[] = [];
  const visit = (node: unknown): void => {
    if (node === null || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      for (const n of node) visit(n);
      return;
    }
    const t = node as CstNode;
    if ((t.type === 'double-quoted-scalar' || t.type === 'single-quoted-scalar') && typeof t.source === 'string' && t.offset !== undefined) {
      const q = t.type === 'double-quoted-scalar' ? '"' : "'";
      const closed = t.source.length >= 2 && t.source.endsWith(q) && (q === "'" || !/(^|[^\\])(\\\\)*\\"$/.test(t.source));
      if (!closed) found.push({ offset: t.offset, message: `the ${q === '"' ? 'double' : 'single'} quote opened here is never closed` });
    }
    if (t.type === 'flow-collection' && t.offset !== undefined) {
      const open = t.start?.source;
      const close = open === '{' ? '}' : ']';
      if (!(t.end ?? []).some((e) => e.source === close)) found.push({ offset: t.offset, message: `the "${open}" opened here is never closed with "${close}"` });
    }
    for (const [k, v] of Object.entries(t)) if (k !== 'source' && typeof v === 'object') visit(v);
  };
  for (const token of new Parser().parse(text)) visit(token);
  return found.sort((a, b) => a.offset - b.offset);
}

/**
 * The syntax errors to report: an unclosed quote or bracket at the place it
 * was opened, instead of the errors it causes further down (which all follow
 * from it); other errors where the parser found them.
 */
export function syntaxProblems(text: string, errors: readonly { pos: [number, number]; message: string }[]): SyntaxProblem[] {
  const opened = unclosed(text);
  // An unclosed quote swallows the rest of the file, closing brackets included:
  // it is the cause whenever there is one.
  const first = opened.find((o) => o.message.includes('quote')) ?? opened[0];
  if (first) {
    const before = errors.filter((e) => e.pos[0] < first.offset).map((e) => ({ offset: e.pos[0], message: `invalid YAML: ${lowerFirst(e.message)}` }));
    return [...before, { offset: first.offset, message: `invalid YAML: ${first.message}` }];
  }
  return errors.map((e) => ({ offset: e.pos[0], message: `invalid YAML: ${lowerFirst(e.message)}` }));
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}
