import { rowId, ValidationError } from '@lms/core';
import { z } from 'zod';

/** `limit` (1–100, default 20) and an opaque `cursor`, accepted by every list. */
export const pageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(200).optional(),
});
export type PageQuery = z.infer<typeof pageQuery>;

/** Where the previous page ended: the sort key (a timestamp) and the id that breaks ties. */
export interface Cursor {
  /** ISO 8601 in UTC, to the microsecond as PostgreSQL stores it. */
  at: string;
  id: string;
}

/** A row of a page query: its id and `page_key`, the sort key that `keysetPage().key` selects. */
export interface KeysetRow {
  id: string;
  page_key: string;
}

export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.at, cursor.id])).toString('base64url');
}

export function decodeCursor(value: string | undefined): Cursor | null {
  if (!value) return null;
  try {
    const [at, id] = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as [unknown, unknown];
    const parsed = rowId.safeParse(id);
    if (typeof at === 'string' && !Number.isNaN(Date.parse(at)) && parsed.success) return { at, id: parsed.data };
  } catch {
    // Falls through to the error below.
  }
  throw new ValidationError('cursor: not a cursor this API returned; start again without it');
}

/** The SQL a repository splices into a page query, and the parameters that go with it. */
export interface KeysetPage {
  /**
   * For the select list: the sort key as text to the microsecond (`page_key`), which the next
   * cursor carries. A JavaScript Date keeps only milliseconds: a cursor made from one would skip
   * the rows that share the last row's millisecond (all of a batch inserted in one statement).
   */
  key: string;
  /** Condition for the WHERE clause: the rows after the cursor (`TRUE` on the first page). */
  where: string;
  /** `ORDER BY … LIMIT …`, newest first, one row more than the page so `toPage` knows if there is a next. */
  orderByLimit: string;
  /** The query's own parameters followed by the page's: pass these as the query's values. */
  params: unknown[];
}

/**
 * Keyset pagination for a list sorted newest first by a timestamp, ties broken by id: the rows
 * strictly after `after` in (sort, id) order, which an index on (sort DESC, id DESC) serves
 * without counting skipped rows. The page's values become parameters numbered after `params`
 * (the query's own `$1…$n`); the two columns are spliced in as written, so they are always the
 * repository's constants, never input.
 */
export function keysetPage(options: {
  /** Timestamp column the list is sorted by, e.g. `created_at` or `d.created_at`. */
  sort: string;
  /** Id column that breaks ties, e.g. `id` or `d.id`. */
  id: string;
  after: Cursor | null;
  limit: number;
  params?: unknown[];
}): KeysetPage {
  const params = [...(options.params ?? [])];
  const next = (value: unknown) => `$${params.push(value)}`;
  const where = options.after
    ? `(${options.sort}, ${options.id}) < (${next(options.after.at)}::timestamptz, ${next(options.after.id)}::uuid)`
    : 'TRUE';
  const orderByLimit = `ORDER BY ${options.sort} DESC, ${options.id} DESC LIMIT ${next(options.limit + 1)}`;
  const key = `to_char(${options.sort} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS page_key`;
  return { key, where, orderByLimit, params };
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/** Builds a page from `limit + 1` fetched rows: the extra row only says there is more. */
export function toPage<R extends KeysetRow, T>(rows: R[], limit: number, present: (row: R) => T): Page<T> {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return {
    items: items.map(present),
    nextCursor: rows.length > limit && last ? encodeCursor({ at: last.page_key, id: last.id }) : null,
  };
}
