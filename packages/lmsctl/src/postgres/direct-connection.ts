import { describePostgresUrl, withDatabase } from '@lms/core/essentials';
import pg from 'pg';
import type { DatabaseUrlSource } from '../context.js';
import { usageError } from '../errors.js';

/** How long the pooler check waits for a connection: the command's own connection reports a slower server. */
const CHECK_TIMEOUT_MS = 5_000;

/**
 * Whether `client` reaches PostgreSQL through a connection pooler. A server tells each new
 * connection the process id serving it (BackendKeyData, which cancel requests quote), and
 * `pg_backend_pid()` is that very process; PgBouncer instead hands its clients a made-up id of its
 * own, for any pool mode, while the statement runs on one of its server connections.
 */
export async function reachesThroughPooler(client: pg.ClientBase): Promise<boolean> {
  // node-postgres keeps the id it was given; its types do not declare it.
  const announced = (client as unknown as { processID: number | null }).processID;
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return announced !== rows[0]?.pid;
}

/**
 * The pooler check, on connections of its own to the URL's database and, at once, to the
 * server's `postgres` database (a database that does not exist yet — restore --create, migrate
 * --create-database — is refused by a server at once but left waiting by PgBouncer); the first to
 * answer decides, for both reach the same address. Null when neither can connect.
 */
async function checkThroughPooler(url: string): Promise<boolean | null> {
  const targets = describePostgresUrl(url).database === 'postgres' ? [url] : [url, withDatabase(url, 'postgres')];
  const clients = targets.map(
    (target) =>
      new pg.Client({
        connectionString: target,
        application_name: 'lmsctl',
        connectionTimeoutMillis: CHECK_TIMEOUT_MS,
      }),
  );
  try {
    return await new Promise<boolean | null>((resolve) => {
      let failed = 0;
      for (const client of clients) {
        client.on('error', () => undefined);
        client
          .connect()
          .then(() => reachesThroughPooler(client))
          .then(resolve, () => {
            if (++failed === clients.length) resolve(null);
          });
      }
    });
  } finally {
    // Also ends the attempt still waiting, so lmsctl does not wait for it before exiting.
    await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
  }
}

/** What to change, by where the pooled URL came from. */
const remedies: Record<DatabaseUrlSource | '--target-database-url', string> = {
  DATABASE_URL:
    "set DATABASE_DIRECT_URL to the server's own address (DATABASE_URL stays the pooler's, for the api and worker)",
  DATABASE_DIRECT_URL: "point DATABASE_DIRECT_URL at the server's own address, not at the pooler",
  '--database-url': "pass the server's own address to --database-url, not the pooler's",
  '--target-database-url': "pass the server's own address to --target-database-url, not the pooler's",
};

/**
 * Refuses `url` (exit 2) when it reaches PostgreSQL through a connection pooler: `doing` (migrate,
 * back up, restore…) needs a session of its own, and a session advisory lock taken through a
 * transaction pooler stays behind on a pooled server connection, blocking the next run. A server
 * that cannot be reached is left to the command, which reports that its own way.
 */
export async function refuseThroughPooler(
  url: string,
  source: DatabaseUrlSource | '--target-database-url',
  doing: string,
): Promise<void> {
  if ((await checkThroughPooler(url)) === true) throw poolerRefusal(url, source, doing);
}

/**
 * `refuseThroughPooler` on a connection the command opened anyway, to `url`'s database (which
 * must exist): saves the check's own connections where every fraction of a second counts (a
 * backup's start). Call it before anything that a pooler would break, a session lock above all.
 */
export async function refuseConnectionThroughPooler(
  client: pg.ClientBase,
  url: string,
  source: DatabaseUrlSource | '--target-database-url',
  doing: string,
): Promise<void> {
  if (await reachesThroughPooler(client)) throw poolerRefusal(url, source, doing);
}

function poolerRefusal(url: string, source: DatabaseUrlSource | '--target-database-url', doing: string): Error {
  const { host, port } = describePostgresUrl(url);
  return usageError(
    `cannot ${doing} through a connection pooler: ${source} (${host}:${port}) reaches PostgreSQL through PgBouncer or another pooler, and this needs a session of its own`,
    remedies[source],
  );
}
