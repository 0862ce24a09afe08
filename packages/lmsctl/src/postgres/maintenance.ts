import type pg from 'pg';

/**
 * The statements of `lmsctl db maintain` and the progress views that follow them. None of them
 * blocks reads or writes: VACUUM and ANALYZE take SHARE UPDATE EXCLUSIVE on their table, REINDEX
 * CONCURRENTLY the same on the table and its index (never the ACCESS EXCLUSIVE of a plain
 * REINDEX or VACUUM FULL). Each runs outside a transaction, as REINDEX CONCURRENTLY must.
 */

export interface RelationName {
  schema: string;
  name: string;
}

function qualified(client: pg.Client, relation: RelationName): string {
  return `${client.escapeIdentifier(relation.schema)}.${client.escapeIdentifier(relation.name)}`;
}

/** VACUUM, with ANALYZE when asked, of one table. */
export async function vacuumTable(client: pg.Client, table: RelationName, analyze: boolean): Promise<void> {
  await client.query(`VACUUM ${analyze ? '(ANALYZE) ' : ''}${qualified(client, table)}`);
}

export async function analyzeTable(client: pg.Client, table: RelationName): Promise<void> {
  await client.query(`ANALYZE ${qualified(client, table)}`);
}

/** Rebuilds one index beside the old one and swaps them; reads and writes go on meanwhile. */
export async function reindexConcurrently(client: pg.Client, index: RelationName): Promise<void> {
  await client.query(`REINDEX INDEX CONCURRENTLY ${qualified(client, index)}`);
}

/**
 * Invalid indexes a failed REINDEX CONCURRENTLY of `index` left behind (`<name>_ccnew`, `_ccold`):
 * they cost writes until dropped.
 */
export async function leftoverIndexes(client: pg.Client, index: RelationName): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND NOT x.indisvalid AND c.relname ~ ('^' || $2 || '_cc(new|old)[0-9]*$')`,
    [index.schema, index.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')],
  );
  return rows.map((row) => row.name);
}

/** One sample of a running VACUUM or index build of the session `pid`. */
export interface MaintenanceProgress {
  phase: string;
  done: number;
  total: number;
}

/** Where the VACUUM of session `pid` is (pg_stat_progress_vacuum), or null when none runs. */
export async function vacuumProgress(client: pg.Client, pid: number): Promise<MaintenanceProgress | null> {
  const { rows } = await client.query<{ phase: string; done: string; total: string }>(
    `SELECT phase, heap_blks_scanned AS done, heap_blks_total AS total FROM pg_stat_progress_vacuum WHERE pid = $1`,
    [pid],
  );
  const row = rows[0];
  return row ? { phase: row.phase, done: Number(row.done), total: Number(row.total) } : null;
}

/** Where the index build of session `pid` is (pg_stat_progress_create_index), or null when none runs. */
export async function indexBuildProgress(client: pg.Client, pid: number): Promise<MaintenanceProgress | null> {
  const { rows } = await client.query<{ phase: string; done: string; total: string }>(
    `SELECT phase,
            CASE WHEN blocks_total > 0 THEN blocks_done ELSE tuples_done END AS done,
            CASE WHEN blocks_total > 0 THEN blocks_total ELSE tuples_total END AS total
       FROM pg_stat_progress_create_index WHERE pid = $1`,
    [pid],
  );
  const row = rows[0];
  return row ? { phase: row.phase, done: Number(row.done), total: Number(row.total) } : null;
}
