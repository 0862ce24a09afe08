import type { Request } from 'express';

/** The id requestLogging gave this request (from a valid X-Request-ID header, else a new UUID). */
export function requestIdOf(req: Request): string {
  return req.id ?? '';
}
