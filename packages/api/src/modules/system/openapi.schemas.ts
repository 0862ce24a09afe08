import { z } from 'zod';

/** `{items, nextCursor}` of `item`, the shape of every list. */
export function pageOf<T extends z.ZodType>(item: T) {
  return z.object({ items: z.array(item), nextCursor: z.string().nullable() });
}

export const errorResponse = z.object({
  error: z.object({ code: z.string(), message: z.string(), requestId: z.string().optional() }),
});
