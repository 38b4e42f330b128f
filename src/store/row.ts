// Typed reads of node:sqlite result rows, so a schema mismatch fails loudly
// instead of leaking `unknown` into the rest of baton.

import type { SQLOutputValue } from 'node:sqlite';
import { BatonError } from '../core/errors.ts';

export type Row = Record<string, SQLOutputValue>;

export function str(row: Row, col: string): string {
  const v = row[col];
  if (typeof v !== 'string') throw new BatonError('STORE_UNAVAILABLE', `the state database does not match this version of baton: column ${col} is not text`);
  return v;
}

export function strOrNull(row: Row, col: string): string | null {
  const v = row[col];
  return v === null || v === undefined ? null : str(row, col);
}

export function num(row: Row, col: string): number {
  const v = row[col];
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  throw new BatonError('STORE_UNAVAILABLE', `the state database does not match this version of baton: column ${col} is not a number`);
}

export function numOrNull(row: Row, col: string): number | null {
  const v = row[col];
  return v === null || v === undefined ? null : num(row, col);
}
