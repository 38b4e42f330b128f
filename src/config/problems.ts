// Config problems and their one-line form "FILE:LINE:COL: path.to.key: message",
// with the position found by walking the YAML document along the key path.

import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';

export interface Problem {
  /** Keys and list indexes from the top of the file to the value concerned. */
  path: readonly PropertyKey[];
  message: string;
  /** Offset in the text, when known without the path (YAML syntax errors). */
  offset?: number;
}

export interface LocatedProblem {
  line: number;
  col: number;
  text: string;
}

/** "services.web.hosts[0]"; the top level is "(top level)". */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out === '' ? '(top level)' : out;
}

/**
 * Offset of the deepest node on `path` that exists in the document: the key of
 * a mapping entry (so a bad value is shown at its key, and a missing key at its
 * parent's key), or the item of a list.
 */
export function offsetOf(doc: Document, path: readonly PropertyKey[]): number {
  let node: unknown = doc.contents;
  let at = rangeStart(node) ?? 0;
  for (const seg of path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      at = rangeStart(pair.key) ?? at;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) break;
      at = rangeStart(item) ?? at;
      node = item;
    } else {
      break;
    }
  }
  return at;
}

function rangeStart(node: unknown): number | undefined {
  return (node as Node | null | undefined)?.range?.[0];
}

export function locate(problem: Problem, file: string, doc: Document, lines: LineCounter): LocatedProblem {
  const offset = problem.offset ?? offsetOf(doc, problem.path);
  const { line, col } = lines.linePos(offset);
  const where = problem.offset === undefined ? `${formatPath(problem.path)}: ` : '';
  return { line, col, text: `${file}:${line}:${col}: ${where}${problem.message}` };
}

/** Problems in file order, each as its detail line. */
export function detailLines(problems: readonly Problem[], file: string, doc: Document, lines: LineCounter): string[] {
  return problems
    .map((p, i) => ({ ...locate(p, file, doc, lines), i }))
    .sort((a, b) => a.line - b.line || a.col - b.col || a.i - b.i)
    .map((p) => p.text);
}
