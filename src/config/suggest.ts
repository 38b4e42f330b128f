// "Did you mean …?" for unknown config keys: the closest known key by edit
// distance, also catching camelCase and kebab-case spellings of snake_case keys
// and keys missing their last word.

export function suggestKey(unknown: string, known: readonly string[]): string | undefined {
  const snake = unknown.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/-/g, '_').toLowerCase();
  if (known.includes(snake)) return snake;
  // A shortened key ("drain" for "drain_timeout") is too far by edit distance.
  const extended = known.filter((k) => k.startsWith(`${snake}_`));
  if (extended.length === 1) return extended[0];
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(snake, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  // Allow one typo per three letters, so short keys do not match everything.
  return bestDistance <= Math.max(1, Math.floor(snake.length / 3)) ? best : undefined;
}

/** Levenshtein distance with adjacent transpositions counted as one edit. */
export function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j);
        continue;
      }
      const prev = rows[i - 1] ?? [];
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, (rows[i - 2]?.[j - 2] ?? 0) + 1);
      }
      row.push(d);
    }
    rows.push(row);
  }
  return rows[a.length]?.[b.length] ?? 0;
}
