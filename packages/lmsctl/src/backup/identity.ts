import type pg from 'pg';
import { describePostgresUrl } from '@lms/core/basics';

/**
 * Which database a backup came from, and which one a command addresses. Two databases backing
 * up into one folder is normal (dev and prod, two tenants, a staging copy): `latest` must mean
 * the newest backup of the database being addressed, and a restore must never put one
 * database's backup over another without the user naming the source.
 */
export interface DatabaseIdentity {
  name: string;
  host: string;
  port: number;
  /** pg_database.oid at backup time: informational (a restore gives the database a new OID). */
  oid?: number;
  /**
   * The cluster's `pg_control_system().system_identifier` (a decimal string: it is a 64-bit
   * number). Unknown when the server could not be asked (offline commands, old manifests).
   */
  systemIdentifier?: string;
}

/** The identity of the database a URL names, as far as the URL alone tells. */
export function identityOfUrl(url: string): DatabaseIdentity {
  const { database, host, port } = describePostgresUrl(url);
  return { name: database, host, port };
}

/**
 * The server's system identifier, or undefined where the function is not allowed (managed
 * services may revoke it): identity then falls back to host and port.
 */
export async function systemIdentifierOf(client: pg.Client): Promise<string | undefined> {
  try {
    const { rows } = await client.query<{ id: string }>(
      'SELECT system_identifier::text AS id FROM pg_control_system()',
    );
    return rows[0]?.id;
  } catch {
    return undefined;
  }
}

/** Name, OID and server identity of the database `client` is connected to. */
export async function identityOfConnection(client: pg.Client, url: string): Promise<DatabaseIdentity> {
  const { rows } = await client.query<{ oid: number }>(
    'SELECT oid FROM pg_database WHERE datname = current_database()',
  );
  const systemIdentifier = await systemIdentifierOf(client);
  return {
    ...identityOfUrl(url),
    oid: rows[0]?.oid,
    ...(systemIdentifier ? { systemIdentifier } : {}),
  };
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

function normalHost(host: string): string {
  const lower = host.toLowerCase();
  return LOOPBACK.has(lower) ? 'loopback' : lower;
}

/**
 * Same PostgreSQL server: by system identifier when both sides know it (host names differ
 * between machines and URLs), else by host and port (with the loopback spellings equal).
 */
export function sameServer(a: DatabaseIdentity, b: DatabaseIdentity): boolean {
  if (a.systemIdentifier && b.systemIdentifier) return a.systemIdentifier === b.systemIdentifier;
  return normalHost(a.host) === normalHost(b.host) && a.port === b.port;
}

/** Same database: same name on the same server. */
export function sameDatabase(a: DatabaseIdentity, b: DatabaseIdentity): boolean {
  return a.name === b.name && sameServer(a, b);
}

/** `lms on db.internal:5432` (with the system identifier when known), for messages. */
export function describeIdentity(identity: DatabaseIdentity, withSystem = false): string {
  const system = withSystem && identity.systemIdentifier ? `, system ${identity.systemIdentifier}` : '';
  return `${identity.name} on ${identity.host}:${identity.port}${system}`;
}

/**
 * Which backups `latest` and the listings consider:
 * - `database`: the backups of this very database (name and server);
 * - `name`: the backups of any database of this name, on any server (`--database`,
 *   `--from-database`: the user named the source);
 * - `all`: every backup in the folder.
 */
export type BackupSelector =
  { kind: 'database'; database: DatabaseIdentity } | { kind: 'name'; name: string } | { kind: 'all' };

/** Whether a backup whose manifest names `source` (null: no manifest) is selected. */
export function selects(selector: BackupSelector, source: DatabaseIdentity | null): boolean {
  if (selector.kind === 'all') return true;
  if (!source) return false;
  if (selector.kind === 'name') return source.name === selector.name;
  return sameDatabase(source, selector.database);
}

export function describeSelector(selector: BackupSelector): string {
  if (selector.kind === 'all') return 'all databases';
  if (selector.kind === 'name') return `database ${selector.name}`;
  return describeIdentity(selector.database);
}

/** A production-looking name: anything not named like a development or test database. */
export function looksLikeProduction(database: string): boolean {
  return !/dev|test/i.test(database);
}
