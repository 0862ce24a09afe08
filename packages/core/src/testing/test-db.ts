import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { withDatabase } from '../db.js';

/** Server the integration tests use; trust auth as `root` on the CI machines. */
export const testServerUrl = process.env.TEST_DATABASE_URL ?? 'postgres://root@127.0.0.1:5432/postgres';
export const testRedisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Every throwaway database starts with this, so leftovers of a killed run can be found. */
export const TEST_DATABASE_PREFIX = 'lms_test_';

export interface TestDatabase {
  name: string;
  url: string;
  /** Drops the database, disconnecting whatever still uses it. */
  drop(): Promise<void>;
}

async function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: testServerUrl, application_name: 'lms-tests' });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** A fresh, empty database on the test server, unique to the caller. */
export async function createTestDatabase(label = 'db'): Promise<TestDatabase> {
  const safeLabel = label
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .slice(0, 20);
  const name = `${TEST_DATABASE_PREFIX}${safeLabel}_${process.pid}_${randomBytes(4).toString('hex')}`;
  await withAdmin((client) => client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`));
  return {
    name,
    url: withDatabase(testServerUrl, name),
    drop: () => dropTestDatabase(name),
  };
}

export async function dropTestDatabase(name: string): Promise<void> {
  await withAdmin((client) => client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`));
}

/** Names of databases on the test server that start with `prefix`. */
export async function listDatabases(prefix: string): Promise<string[]> {
  return withAdmin(async (client) => {
    const { rows } = await client.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname`,
      [prefix],
    );
    return rows.map((row) => row.datname);
  });
}

/**
 * A Redis key prefix unique to the caller, for queues and caches under test. The label keeps to
 * what QUEUE_PREFIX accepts and holds no glob characters, so the prefix is safe in a SCAN MATCH.
 */
export function testRedisPrefix(label = 'redis'): string {
  const safeLabel = label.replace(/[^A-Za-z0-9_-]+/g, '_');
  return `lms_test:${safeLabel}:${process.pid}:${randomBytes(4).toString('hex')}`;
}
