import { errorMessage } from '@lms/core/essentials';
import os from 'node:os';
import type pg from 'pg';
import { isProcessAlive } from '../lib/process-alive.js';

/**
 * Server-level SQL that restore, drill and cleanup need: sessions, database properties,
 * creating, marking, swapping and dropping databases. Identifiers are always escaped.
 */

export interface SessionInfo {
  pid: number;
  applicationName: string;
  user: string;
  clientAddr: string | null;
}

/** Sessions connected to `database`, other than the caller's own. */
export async function sessionsOn(client: pg.Client, database: string): Promise<SessionInfo[]> {
  const { rows } = await client.query<{
    pid: number;
    application_name: string;
    usename: string;
    client_addr: string | null;
  }>(
    `SELECT pid, application_name, usename, client_addr::text AS client_addr
       FROM pg_stat_activity
      WHERE datname = $1 AND pid <> pg_backend_pid()
      ORDER BY pid`,
    [database],
  );
  return rows.map((row) => ({
    pid: row.pid,
    applicationName: row.application_name,
    user: row.usename,
    clientAddr: row.client_addr,
  }));
}

/** "lms-api ×2, psql" for a refusal message. */
export function summarizeSessions(sessions: SessionInfo[]): string {
  const counts = new Map<string, number>();
  for (const session of sessions) {
    const name = session.applicationName || 'unnamed client';
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return [...counts].map(([name, count]) => (count > 1 ? `${name} ×${count}` : name)).join(', ');
}

/** Terminates every other session on `database` and waits (up to 10 s) until they are gone. */
export async function terminateSessions(client: pg.Client, database: string): Promise<number> {
  const { rowCount } = await client.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
    [database],
  );
  for (let waited = 0; waited < 10_000; waited += 100) {
    if ((await sessionsOn(client, database)).length === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return rowCount ?? 0;
}

export interface DatabaseFacts {
  name: string;
  oid: number;
  owner: string;
  sizeBytes: number;
  encoding: string;
  collate: string;
  ctype: string;
  connectionLimit: number;
  comment: string | null;
}

export async function databaseFacts(client: pg.Client, database: string): Promise<DatabaseFacts | null> {
  const { rows } = await client.query<{
    oid: number;
    owner: string;
    size: string;
    encoding: string;
    collate: string;
    ctype: string;
    connlimit: number;
    comment: string | null;
  }>(
    `SELECT d.oid, pg_get_userbyid(d.datdba) AS owner, pg_database_size(d.oid) AS size,
            pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS collate, d.datctype AS ctype,
            d.datconnlimit AS connlimit, shobj_description(d.oid, 'pg_database') AS comment
       FROM pg_database d WHERE d.datname = $1`,
    [database],
  );
  const row = rows[0];
  if (!row) return null;
  return {
    name: database,
    oid: row.oid,
    owner: row.owner,
    sizeBytes: Number(row.size),
    encoding: row.encoding,
    collate: row.collate,
    ctype: row.ctype,
    connectionLimit: row.connlimit,
    comment: row.comment,
  };
}

/** A database name of at most 63 bytes: `base` is shortened (by bytes) to make room for `suffix`. */
export function derivedDatabaseName(base: string, suffix: string): string {
  const room = 63 - Buffer.byteLength(suffix);
  let shortened = base;
  while (Buffer.byteLength(shortened) > room) shortened = shortened.slice(0, -1);
  return `${shortened}${suffix}`;
}

/** The marker lmsctl writes in a database's comment to find its own scratch databases later. */
export interface DatabaseMarker {
  lmsctl: 'restore-in-progress' | 'pre-restore' | 'drill';
  target?: string;
  backup?: string;
  pid?: number;
  host?: string;
  at: string;
}

export function markerFor(
  kind: DatabaseMarker['lmsctl'],
  extra: Omit<DatabaseMarker, 'lmsctl' | 'at' | 'pid' | 'host'> = {},
): DatabaseMarker {
  return { lmsctl: kind, ...extra, pid: process.pid, host: os.hostname(), at: new Date().toISOString() };
}

export async function setComment(client: pg.Client, database: string, comment: string | null): Promise<void> {
  const literal = comment === null ? 'NULL' : client.escapeLiteral(comment);
  await client.query(`COMMENT ON DATABASE ${client.escapeIdentifier(database)} IS ${literal}`);
}

export interface MarkedDatabase {
  name: string;
  marker: DatabaseMarker;
  sizeBytes: number;
  sessions: number;
}

/** Databases whose comment carries an lmsctl marker. */
export async function markedDatabases(client: pg.Client): Promise<MarkedDatabase[]> {
  const { rows } = await client.query<{ datname: string; comment: string; size: string; sessions: number }>(
    `SELECT d.datname, shobj_description(d.oid, 'pg_database') AS comment, pg_database_size(d.oid) AS size,
            (SELECT count(*)::int FROM pg_stat_activity a WHERE a.datname = d.datname) AS sessions
       FROM pg_database d
      WHERE shobj_description(d.oid, 'pg_database') LIKE '{"lmsctl":%'
      ORDER BY d.datname`,
  );
  const marked: MarkedDatabase[] = [];
  for (const row of rows) {
    try {
      marked.push({
        name: row.datname,
        marker: JSON.parse(row.comment) as DatabaseMarker,
        sizeBytes: Number(row.size),
        sessions: row.sessions,
      });
    } catch {
      continue;
    }
  }
  return marked;
}

/**
 * A scratch database (half-built restore, drill) whose lmsctl is gone: nothing is connected to
 * it and its process is dead (same machine) or the marker is older than a day (elsewhere).
 */
export function isAbandoned(database: MarkedDatabase, now = Date.now()): boolean {
  if (database.marker.lmsctl === 'pre-restore' || database.sessions > 0) return false;
  if (database.marker.host === os.hostname() && database.marker.pid !== undefined)
    return !isProcessAlive(database.marker.pid);
  return now - new Date(database.marker.at).getTime() > 86_400_000;
}

/** Whether a kept or abandoned database is a leftover of restoring (drilling, adopting) `database`. */
export function isLeftoverOf(db: MarkedDatabase, database: string): boolean {
  if (db.marker.target !== undefined) return db.marker.target === database;
  // Markers written before they named their target: go by the name restore gives them.
  return db.name.startsWith(`${database}_restoring_`) || db.name.startsWith(`${database}_pre_restore_`);
}

/**
 * Drops the scratch databases that interrupted restores, drills and adoptions of `database`'s
 * backups left behind (see isAbandoned) and says which, one line each. Only that database's: a
 * restore confirmed for one database does not drop what another one's left (`restore cleanup
 * --all` does, after asking).
 */
export async function dropAbandonedDatabases(
  client: pg.Client,
  database: string,
  say: (line: string) => void,
): Promise<void> {
  const abandoned = (await markedDatabases(client)).filter((db) => isAbandoned(db) && isLeftoverOf(db, database));
  for (const { name, marker } of abandoned) {
    await dropDatabase(client, name);
    say(`removed ${name}, left half-built by an interrupted ${marker.lmsctl.replace(/-/g, ' ')}`);
  }
}

export async function createDatabase(
  client: pg.Client,
  name: string,
  like: Pick<DatabaseFacts, 'encoding' | 'collate' | 'ctype'> | null,
): Promise<void> {
  const identifier = client.escapeIdentifier(name);
  const options = like
    ? ` TEMPLATE template0 ENCODING ${client.escapeLiteral(like.encoding)} LC_COLLATE ${client.escapeLiteral(like.collate)} LC_CTYPE ${client.escapeLiteral(like.ctype)}`
    : ' TEMPLATE template0';
  await client.query(`CREATE DATABASE ${identifier}${options}`);
}

export async function dropDatabase(client: pg.Client, name: string): Promise<void> {
  await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`);
}

const LIST_SETTINGS = new Set([
  'search_path',
  'temp_tablespaces',
  'session_preload_libraries',
  'local_preload_libraries',
]);

/**
 * Gives `restored` the owner, per-database settings, privileges and connection limit of
 * `original` (pg_dump does not carry database-level properties). Returns what could not be
 * copied (e.g. no permission to change the owner), for a warning.
 */
export async function copyDatabaseProperties(
  client: pg.Client,
  original: DatabaseFacts,
  restored: string,
): Promise<string[]> {
  const problems: string[] = [];
  const target = client.escapeIdentifier(restored);
  const attempt = async (what: string, sql: string) => {
    try {
      await client.query(sql);
    } catch (error) {
      problems.push(`${what}: ${errorMessage(error)}`);
    }
  };
  await attempt('owner', `ALTER DATABASE ${target} OWNER TO ${client.escapeIdentifier(original.owner)}`);
  if (original.connectionLimit !== -1) {
    await attempt('connection limit', `ALTER DATABASE ${target} CONNECTION LIMIT ${original.connectionLimit}`);
  }
  const settings = await client.query<{ role: string | null; setting: string }>(
    `SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END AS role, unnest(s.setconfig) AS setting
       FROM pg_db_role_setting s WHERE s.setdatabase = $1`,
    [original.oid],
  );
  for (const { role, setting } of settings.rows) {
    const eq = setting.indexOf('=');
    const name = setting.slice(0, eq);
    const stored = setting.slice(eq + 1);
    // List settings are stored already quoted element by element ("$user", public); others are one literal.
    const value = LIST_SETTINGS.has(name.toLowerCase()) ? stored : client.escapeLiteral(stored);
    const scope = role ? `ROLE ${client.escapeIdentifier(role)} IN DATABASE ${target}` : `DATABASE ${target}`;
    await attempt(`setting ${name}`, `ALTER ${scope} SET ${client.escapeIdentifier(name)} TO ${value}`);
  }
  const grants = await client.query<{ grantee: string; privilege: string; grantable: boolean }>(
    `SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS grantee,
            a.privilege_type AS privilege, a.is_grantable AS grantable
       FROM pg_database d, aclexplode(d.datacl) a
      WHERE d.oid = $1 AND a.grantee <> d.datdba`,
    [original.oid],
  );
  if (grants.rows.length > 0) {
    // Start from the original's privileges, not PostgreSQL's defaults for a new database.
    await attempt('privileges', `REVOKE ALL ON DATABASE ${target} FROM PUBLIC`);
  }
  for (const grant of grants.rows) {
    const grantee = grant.grantee === 'PUBLIC' ? 'PUBLIC' : client.escapeIdentifier(grant.grantee);
    await attempt(
      `privilege ${grant.privilege}`,
      `GRANT ${grant.privilege} ON DATABASE ${target} TO ${grantee}${grant.grantable ? ' WITH GRANT OPTION' : ''}`,
    );
  }
  return problems;
}
