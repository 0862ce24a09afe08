import { ValidationError } from '@lms/core';
import type { z } from 'zod';

/**
 * Parses request input with its schema; the first problem becomes a ValidationError
 * ("field: message") and so a 400 from the error handler.
 */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const path = issue.path.length ? issue.path.join('.') : where;
  throw new ValidationError(`${path}: ${issue.message}`);
}
