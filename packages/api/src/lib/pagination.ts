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

/**
 * `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`, what `keysetPage().key` selects (cursors made before it carried
 * milliseconds, so any 0–6 fraction digits). Nothing else: PostgreSQL would read many strings that
 * `Date.parse` accepts differently, or refuse them (22007/22008) as a 500.
 */
const CURSOR_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?Z$/;

/** True when `at` is a cursor timestamp whose every field is in range (no 30 February, no hour 24). */
function isCursorTime(at: string): boolean {
  const match = CURSOR_TIME.exec(at);
  if (!match) return false;
  const [year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0] = match.slice(1).map(Number);
  // Day 0 of the next month is the last day of this one.
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return (
    year >= 1 &&
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysInMonth &&
    hour <= 23 &&
    minute <= 59 &&
    second <= 59
  );
}

/**
 * Reads a cursor from a request. Everything is checked before it reaches SQL: base64url of a JSON
 * array of exactly a cursor timestamp and a row id; anything else is a 400.
 */
export function decodeCursor(value: string | undefined): Cursor | null {
  if (!value) return null;
  const invalid = new ValidationError('cursor: not a cursor this API returned; start again without it');
  if (!/^[A-Za-z0-9_-]+$/.test(value)) throw invalid;
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'));
  } catch {
    throw invalid;
  }
  if (!Array.isArray(decoded) || decoded.length !== 2) throw invalid;
  const [at, id] = decoded as [unknown, unknown];
  const parsedId = rowId.safeParse(id);
  if (typeof at !== 'string' || !isCursorTime(at) || !parsedId.success) throw invalid;
  return { at, id: parsedId.data };
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
