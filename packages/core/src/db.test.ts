import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { loadConfig } from './config.js';
import { connectClient, createDatabaseIfMissing, createPool, withDatabase } from './db.js';
import { DatabaseConnectionError } from './errors.js';
import { createTestDatabase, dropTestDatabase, testServerUrl, type TestDatabase } from './testing/index.js';

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase('db');
});

afterAll(async () => {
  await database.drop();
});

const poolConfig = (overrides: Record<string, string> = {}) =>
  loadConfig({ DB_POOL_SIZE: '2', DB_MAX_OVERFLOW: '3', ...overrides });

describe('createPool', () => {
  it('opens at most DB_POOL_SIZE + DB_MAX_OVERFLOW connections', async () => {
    const pool = createPool({ connectionString: database.url, config: poolConfig(), applicationName: 'lms-pool-test' });
    try {
      expect(pool.options.max).toBe(5);
      const clients = await Promise.all(Array.from({ length: 5 }, () => pool.connect()));
      const waiting = pool.connect();
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(pool.waitingCount).toBe(1);
      clients[0]!.release();
      const sixth = await waiting;
      sixth.release();
      for (const client of clients.slice(1)) client.release();
      const { rows } = await pool.query<{ count: string }>(
        `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lms-pool-test' AND datname = current_database()`,
      );
      expect(Number(rows[0]!.count)).toBe(5);
    } finally {
      await pool.end();
    }
  });

  it('replaces idle connections that were silently dropped instead of failing the query (pre-ping)', async () => {
    const proxy = await startDroppingProxy(new URL(database.url));
    const pool = createPool({
      connectionString: withHostPort(database.url, proxy.port),
      config: poolConfig({ DB_POOL_SIZE: '1', DB_MAX_OVERFLOW: '0' }),
      applicationName: 'lms-preping-test',
      prePingAfterMs: 0,
    });
    try {
      const first = await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      proxy.forgetConnections();
      const second = await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      expect(second.rows[0]!.pid).not.toBe(first.rows[0]!.pid);
      expect(pool.totalCount).toBe(1);
    } finally {
      await pool.end();
      await proxy.close();
    }
  });

  it('without pre-ping the same drop fails the query (the control for the test above)', async () => {
    const proxy = await startDroppingProxy(new URL(database.url));
    const pool = createPool({
      connectionString: withHostPort(database.url, proxy.port),
      config: poolConfig({ DB_POOL_SIZE: '1', DB_MAX_OVERFLOW: '0' }),
      applicationName: 'lms-preping-test',
      prePingAfterMs: 60_000,
    });
    try {
      await pool.query('SELECT 1');
      proxy.forgetConnections();
      await expect(pool.query('SELECT 1')).rejects.toThrow();
    } finally {
      await pool.end();
      await proxy.close();
    }
  });
});

function withHostPort(url: string, port: number): string {
  const parsed = new URL(url);
  parsed.hostname = '127.0.0.1';
  parsed.port = String(port);
  return parsed.toString();
}

/**
 * A TCP proxy to PostgreSQL that can "forget" its connections the way a NAT gateway or a
 * cloud load balancer does: the client's socket stays open and hears nothing, and the next
 * bytes it sends are answered with a reset.
 */
async function startDroppingProxy(target: URL) {
  const live = new Set<{ client: net.Socket; upstream: net.Socket; forgotten: boolean }>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    const link = { client, upstream, forgotten: false };
    live.add(link);
    client.on('data', (chunk) => {
      if (link.forgotten) client.resetAndDestroy();
      else upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (!link.forgotten) client.write(chunk);
    });
    const close = () => {
      live.delete(link);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', () => !link.forgotten && close());
    upstream.on('error', () => undefined).on('close', () => !link.forgotten && close());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    forgetConnections() {
      for (const link of live) {
        link.forgotten = true;
        // The server side goes away for good; the client is not told.
        link.upstream.destroy();
      }
    },
    async close() {
      for (const link of live) {
        link.client.destroy();
        link.upstream.destroy();
      }
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('connectClient', () => {
  it('connects and names the application', async () => {
    const client = await connectClient(database.url, { applicationName: 'lms-connect-test' });
    const { rows } = await client.query<{ name: string }>('SELECT current_setting($1) AS name', ['application_name']);
    expect(rows[0]!.name).toBe('lms-connect-test');
    await client.end();
  });

  it('refuses something that is not a postgres URL, masking the password', async () => {
    const error = await connectClient('mysql://u:hunter2@h/x').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DatabaseConnectionError);
    expect((error as Error).message).toMatch(/^not a PostgreSQL URL: mysql:\/\/u:\*\*\*@h\/x/);
  });

  it('says the server refused the connection, without the password', async () => {
    const error = await connectClient('postgres://u:hunter2@127.0.0.1:1/x').catch((caught: unknown) => caught);
    expect((error as Error).message).toBe(
      'cannot connect to PostgreSQL at 127.0.0.1:1: connection refused (is the server running and listening there?)',
    );
  });

  it('says which database does not exist', async () => {
    const error = await connectClient(withDatabase(testServerUrl, 'lms_no_such_db')).catch((caught: unknown) => caught);
    expect((error as Error).message).toMatch(/^database "lms_no_such_db" does not exist on PostgreSQL at /);
  });
});

describe('createDatabaseIfMissing', () => {
  it('creates the database once', async () => {
    const url = withDatabase(testServerUrl, `${database.name}_new`);
    try {
      expect(await createDatabaseIfMissing(url)).toBe(true);
      expect(await createDatabaseIfMissing(url)).toBe(false);
      const client = await connectClient(url);
      await client.end();
    } finally {
      await dropTestDatabase(`${database.name}_new`);
    }
  });

  it('lets callers racing on a fresh name all succeed, exactly one of them creating it', async () => {
    const url = withDatabase(testServerUrl, `${database.name}_race`);
    try {
      const created = await Promise.all([1, 2, 3, 4].map(() => createDatabaseIfMissing(url)));
      expect(created.filter(Boolean)).toHaveLength(1);
    } finally {
      await dropTestDatabase(`${database.name}_race`);
    }
  });
});
