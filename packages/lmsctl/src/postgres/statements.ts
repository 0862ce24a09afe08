import type pg from 'pg';

/** One normalised statement as pg_stat_statements counts it in the connected database. */
export interface StatementStats {
  /** The statement text, whitespace collapsed, cut to `QUERY_TEXT_LENGTH` characters (… when cut). */
  query: string;
  calls: number;
  totalMs: number;
  meanMs: number;
  rows: number;
}

/** Characters of a statement's text kept: enough to recognise it, short enough for a terminal line. */
export const QUERY_TEXT_LENGTH = 160;

/** Why pg_stat_statements cannot answer, for the one line that says how to enable it. */
export type StatementsUnavailable = 'not-preloaded' | 'no-extension';

/** SQLSTATE of "pg_stat_statements must be loaded via shared_preload_libraries". */
const OBJECT_NOT_IN_PREREQUISITE_STATE = '55000';

/**
 * The top `limit` statements of the connected database by total execution time (PostgreSQL 13+
 * column names), or why pg_stat_statements cannot say: the library is not preloaded, or the
 * extension was not created in this database.
 */
export async function topStatements(
  client: pg.Client,
  limit: number,
  orderBy: 'total' | 'mean' = 'total',
): Promise<StatementStats[] | StatementsUnavailable> {
  // pg_settings hides the setting from a role without pg_read_all_settings (no row, no error).
  const { rows: present } = await client.query<{ preloaded: boolean | null; created: boolean }>(
    `SELECT (SELECT 'pg_stat_statements' = ANY (string_to_array(replace(setting, ' ', ''), ','))
               FROM pg_settings WHERE name = 'shared_preload_libraries') AS preloaded,
            EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') AS created`,
  );
  if (present[0]?.preloaded === false) return 'not-preloaded';
  if (!present[0]?.created) return 'no-extension';
  const order = orderBy === 'total' ? 'total_exec_time' : 'mean_exec_time';
  try {
    const { rows } = await client.query<{ query: string; calls: string; total: number; mean: number; rows: string }>(
      `SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, calls, total_exec_time AS total,
              mean_exec_time AS mean, rows
         FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        ORDER BY ${order} DESC
        LIMIT $1`,
      [limit],
    );
    return rows.map((row) => ({
      query: row.query.length > QUERY_TEXT_LENGTH ? `${row.query.slice(0, QUERY_TEXT_LENGTH - 1)}…` : row.query,
      calls: Number(row.calls),
      totalMs: row.total,
      meanMs: row.mean,
      rows: Number(row.rows),
    }));
  } catch (error) {
    // Preloaded per the setting, yet not loaded: the setting changed and PostgreSQL was not restarted.
    if ((error as { code?: string }).code === OBJECT_NOT_IN_PREREQUISITE_STATE) return 'not-preloaded';
    throw error;
  }
}

/** The one line that says how to make pg_stat_statements answer in `database`. */
export function howToEnableStatements(reason: StatementsUnavailable, database: string): string {
  const create = `CREATE EXTENSION pg_stat_statements; in database ${database}`;
  return reason === 'not-preloaded'
    ? `pg_stat_statements is not loaded: set shared_preload_libraries = 'pg_stat_statements' in postgresql.conf (Azure: the server parameter), restart PostgreSQL, then run ${create}`
    : `pg_stat_statements is not installed in ${database}: run ${create} (after shared_preload_libraries = 'pg_stat_statements' and a restart, if not done yet)`;
}
