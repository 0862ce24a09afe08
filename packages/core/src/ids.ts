import { z } from 'zod';

/**
 * A row id. Every table's primary key is a PostgreSQL uuid, so anything else can never name a
 * row: job payloads and request paths refuse it where it comes in, with this message, instead of
 * letting it reach PostgreSQL as "invalid input syntax for type uuid".
 */
export const rowId = z.uuid('must be a UUID');
