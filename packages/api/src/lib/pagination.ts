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
  at: string;
  id: string;
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

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/** Builds a page from `limit + 1` fetched rows: the extra row only says there is more. */
export function toPage<R, T>(rows: R[], limit: number, present: (row: R) => T, cursorOf: (row: R) => Cursor): Page<T> {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return {
    items: items.map(present),
    nextCursor: rows.length > limit && last ? encodeCursor(cursorOf(last)) : null,
  };
}
