import type { Queryable } from '@lms/core/webhook-events';

/** Tables the worker's handlers write; the newest comes with migration 0008. */
const REQUIRED_TABLES = [
  'enrollments',
  'certificates',
  'webhook_deliveries',
  'email_deliveries',
  'enrollment_follow_ups',
];

/** The required tables the database lacks (empty when it is migrated far enough). */
export async function missingTables(db: Queryable): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>(
    `SELECT name FROM unnest($1::text[]) AS name WHERE to_regclass('public.' || name) IS NULL`,
    [REQUIRED_TABLES],
  );
  return rows.map((row) => row.name);
}
