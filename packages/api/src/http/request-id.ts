import type { Request } from 'express';

/** The id pino-http gave this request (from a valid X-Request-ID header, else a new UUID). */
export function requestIdOf(req: Request): string {
  const id: unknown = req.id;
  return typeof id === 'string' || typeof id === 'number' ? String(id) : '';
}
