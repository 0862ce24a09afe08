import { AppError } from './errors.js';

/** What `one` and `maybeOne` read of a pg `QueryResult`. */
export interface RowsOf<T> {
  rows: T[];
  /** `INSERT`, `SELECT`, …: named in the error when a row was expected and none came. */
  command?: string;
}

/**
 * The first row of a query that always returns one (`INSERT … RETURNING`, `count(*)`, a row
 * locked a moment ago). No row means a bug or a concurrent delete, never bad input: a 500 that
 * says which statement came back empty, instead of a `TypeError` on `undefined` further on.
 */
export function one<T>(result: RowsOf<T>): T {
  const row = result.rows[0];
  if (row === undefined) {
    throw new AppError(`${result.command ?? 'query'} returned no row where one was expected`);
  }
  return row;
}

/** The first row of a query that may find nothing (a lookup by id), or undefined. */
export function maybeOne<T>(result: RowsOf<T>): T | undefined {
  return result.rows[0];
}
