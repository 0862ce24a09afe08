import { UnrecoverableError } from 'bullmq';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Row ids are UUIDs: a payload with anything else can never succeed, so it fails the job for
 * good with a clear reason instead of retrying into PostgreSQL's "invalid input syntax".
 */
export function assertUuid(value: string, what: string): void {
  if (!UUID.test(value)) throw new UnrecoverableError(`${what} must be a UUID, got "${value}"`);
}
