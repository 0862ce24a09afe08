import os from 'node:os';
import { connectClient, createDatabaseIfMissing, describePostgresUrl, maskUrl, withDatabase } from '@lms/core';
import { devSecret } from './dev-secrets.js';
import { EMBEDDED_POSTGRES_PORT, startEmbeddedPostgres } from './embedded-postgres-server.js';

export interface DevPostgres {
  url: string;
  /** Stops the embedded server; null when the dev stack uses a server that already ran. */
  stop: (() => Promise<void>) | null;
}

/** True when the server of `url` accepts a connection (to its `postgres` database) within 3 s. */
async function serverAnswers(url: string): Promise<boolean> {
  const admin = await connectClient(withDatabase(url, 'postgres'), {
    applicationName: 'lmsctl up',
    timeoutMs: 3000,
  }).catch(() => null);
  await admin?.end();
  return admin !== null;
}

async function useServer(url: string, say: (line: string) => void): Promise<DevPostgres> {
  if (await createDatabaseIfMissing(url)) say(`created database ${describePostgresUrl(url).database}`);
  say(`using PostgreSQL at ${maskUrl(url)}`);
  return { url, stop: null };
}

/**
 * The local server over TCP as libpq's own variables describe it (PGHOST, PGPORT, PGUSER and
 * PGDATABASE, which are libpq's convention rather than settings of the LMS; else 127.0.0.1:5432
 * as the current user, database `lms_dev`).
 */
function localServerUrl(env: NodeJS.ProcessEnv): string {
  const host = env.PGHOST && !env.PGHOST.startsWith('/') ? env.PGHOST : '127.0.0.1';
  const user = env.PGUSER ?? os.userInfo().username;
  return `postgres://${encodeURIComponent(user)}@${host}:${env.PGPORT ?? '5432'}/${encodeURIComponent(env.PGDATABASE ?? 'lms_dev')}`;
}

/**
 * The dev stack's PostgreSQL: the server of `configuredUrl` when it answers; without one, the
 * local server libpq's variables describe when it accepts this user; else an embedded one.
 */
export async function ensurePostgres(options: {
  /** --database-url or DATABASE_URL. */
  configuredUrl: string | undefined;
  /** Folder of the dev stack's state (.lms). */
  dataDir: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
  say: (line: string) => void;
}): Promise<DevPostgres> {
  const { configuredUrl, say } = options;
  if (configuredUrl) {
    if (await serverAnswers(configuredUrl)) return useServer(configuredUrl, say);
    say(`PostgreSQL at ${maskUrl(configuredUrl)} does not answer; starting an embedded one`);
  } else {
    const local = localServerUrl(options.env);
    if (await serverAnswers(local)) {
      say('no DATABASE_URL: using the local PostgreSQL that accepts this user');
      return useServer(local, say);
    }
  }
  const embedded = await startEmbeddedPostgres({
    dataDir: options.dataDir,
    password: await devSecret(options.dataDir, 'postgres-password'),
    cwd: options.cwd,
    env: options.env,
    say,
  });
  try {
    await createDatabaseIfMissing(embedded.url);
  } catch (error) {
    await embedded.stop();
    throw error;
  }
  say(`embedded PostgreSQL on 127.0.0.1:${EMBEDDED_POSTGRES_PORT}`);
  return embedded;
}
