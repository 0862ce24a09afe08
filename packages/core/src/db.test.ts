import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { loadConfig } from './config.js';
import {
  connectClient,
  createDatabaseIfMissing,
  createPool,
  isDatabaseUnavailable,
  isQueryTimeout,
  pingDatabase,
  withDatabase,
} from './db.js';
import { DatabaseConnectionError } from './errors.js';
import { createTestDatabase, dropTestDatabase, freePort, testServerUrl, type TestDatabase } from './testing/index.js';
import { withTransaction } from './transaction.js';

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

describe('pool timeouts', () => {
  it('the server cancels a statement longer than DB_STATEMENT_TIMEOUT_SECONDS; the connection stays in the pool', async () => {
    const pool = createPool({
      connectionString: database.url,
      config: poolConfig({ DB_POOL_SIZE: '1', DB_MAX_OVERFLOW: '0', DB_STATEMENT_TIMEOUT_SECONDS: '1' }),
      applicationName: 'lms-statement-timeout-test',
    });
    try {
      const error = await pool.query('SELECT pg_sleep(3)').catch((caught: unknown) => caught);
      expect(error).toMatchObject({ code: '57014' });
      expect(isDatabaseUnavailable(error)).toBe(true);
      const client = await pool.connect();
      try {
        await expect(client.query('SELECT pg_sleep(3)')).rejects.toMatchObject({ code: '57014' });
        expect((await client.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      } finally {
        client.release();
      }
    } finally {
      await pool.end();
    }
  });

  it('a transaction whose query gets no answer within DB_QUERY_TIMEOUT_SECONDS fails, and its connection is dropped', async () => {
    const pool = createPool({
      connectionString: database.url,
      config: poolConfig({
        DB_POOL_SIZE: '1',
        DB_MAX_OVERFLOW: '0',
        DB_STATEMENT_TIMEOUT_SECONDS: '0',
        DB_QUERY_TIMEOUT_SECONDS: '1',
      }),
      applicationName: 'lms-query-timeout-test',
    });
    try {
      const error = await withTransaction(pool, (client) => client.query('SELECT pg_sleep(3)')).catch(
        (caught: unknown) => caught,
      );
      expect(isQueryTimeout(error)).toBe(true);
      expect(isDatabaseUnavailable(error)).toBe(true);
      expect(pool.totalCount).toBe(0);
      expect((await pool.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await pool.end();
    }
  });

  it('pre-ping gives up at the first ping without an answer instead of trying every idle connection', async () => {
    const proxy = await startDroppingProxy(new URL(database.url));
    const pool = createPool({
      connectionString: withHostPort(database.url, proxy.port),
      config: poolConfig({
        DB_POOL_SIZE: '3',
        DB_MAX_OVERFLOW: '0',
        DB_POOL_TIMEOUT_SECONDS: '1',
        DB_STATEMENT_TIMEOUT_SECONDS: '0',
        DB_QUERY_TIMEOUT_SECONDS: '1',
      }),
      applicationName: 'lms-preping-stall-test',
      prePingAfterMs: 0,
    });
    try {
      const clients = await Promise.all([1, 2, 3].map(() => pool.connect()));
      for (const client of clients) client.release();
      proxy.stallConnections();
      const error = await pool.query('SELECT 1').catch((caught: unknown) => caught);
      expect(isQueryTimeout(error)).toBe(true);
      expect(pool.totalCount).toBe(2);
    } finally {
      await proxy.close();
      await pool.end();
    }
  });

  it('running out of pool connections fails after DB_POOL_TIMEOUT_SECONDS as unavailable', async () => {
    const pool = createPool({
      connectionString: database.url,
      config: poolConfig({ DB_POOL_SIZE: '1', DB_MAX_OVERFLOW: '0', DB_POOL_TIMEOUT_SECONDS: '1' }),
      applicationName: 'lms-pool-exhausted-test',
    });
    const held = await pool.connect();
    try {
      const error = await pool.query('SELECT 1').catch((caught: unknown) => caught);
      expect((error as Error).message).toBe('timeout exceeded when trying to connect');
      expect(isDatabaseUnavailable(error)).toBe(true);
    } finally {
      held.release();
      await pool.end();
    }
  });
});

describe('isDatabaseUnavailable', () => {
  it('is true for a refused connection and false for errors of the statement itself', async () => {
    const refused = await connectClient(`postgres://root@127.0.0.1:${await freePort()}/x`).catch(
      (caught: unknown) => caught,
    );
    // connectClient's readable error keeps the driver's as its cause.
    expect(isDatabaseUnavailable(refused)).toBe(true);
    const client = await connectClient(database.url);
    try {
      const syntax = await client.query('SELEC 1').catch((caught: unknown) => caught);
      const division = await client.query('SELECT 1/0').catch((caught: unknown) => caught);
      expect(syntax).toMatchObject({ code: '42601' });
      expect(division).toMatchObject({ code: '22012' });
      expect(isDatabaseUnavailable(syntax)).toBe(false);
      expect(isDatabaseUnavailable(division)).toBe(false);
      expect(isDatabaseUnavailable(new Error('something else'))).toBe(false);
    } finally {
      await client.end();
    }
  });
});

describe('pingDatabase', () => {
  it('answers for a live server and leaves no connection behind', async () => {
    await pingDatabase(database.url, { applicationName: 'lms-ping-test', timeoutMs: 5000 });
    const client = await connectClient(database.url);
    try {
      let count = 1;
      // The goodbye is not awaited by the probe; the server sees it a moment later.
      for (let tries = 0; count > 0 && tries < 50; tries++) {
        const { rows } = await client.query<{ count: string }>(
          `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lms-ping-test'`,
        );
        count = Number(rows[0]!.count);
        if (count > 0) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(count).toBe(0);
    } finally {
      await client.end();
    }
  });

  it('rejects when the server does not answer, and when nothing listens', async () => {
    const proxy = await startDroppingProxy(new URL(database.url));
    try {
      proxy.stallConnections();
      await expect(
        pingDatabase(withHostPort(database.url, proxy.port), { applicationName: 'lms-ping-test', timeoutMs: 500 }),
      ).rejects.toThrow('no answer within 500 ms');
    } finally {
      await proxy.close();
    }
    const refused = await pingDatabase(`postgres://root@127.0.0.1:${await freePort()}/x`, {
      applicationName: 'lms-ping-test',
      timeoutMs: 5000,
    }).catch((caught: unknown) => caught);
    expect(refused).toMatchObject({ code: 'ECONNREFUSED' });
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
  let stalled = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    const link = { client, upstream, forgotten: false };
    live.add(link);
    client.on('data', (chunk) => {
      if (stalled) return;
      if (link.forgotten) client.resetAndDestroy();
      else upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (!link.forgotten && !stalled) client.write(chunk);
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
    /** From now on nothing is passed on, in either direction, and nobody is told: a frozen server. */
    stallConnections() {
      stalled = true;
    },
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
