// Runs a function inside one SQLite transaction: all of its writes commit
// together or none do.

import type { DatabaseSync } from 'node:sqlite';

export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  // Nested calls join the outer transaction rather than failing on BEGIN.
  if (db.isTransaction) return fn();
  // IMMEDIATE takes the write lock up front, so a concurrent writer waits on
  // busy_timeout at BEGIN instead of failing halfway through.
  db.exec('BEGIN IMMEDIATE');
  try {
    const result = fn();
    db.exec('COMMIT');
    return result;
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw err;
  }
}
