import type pg from 'pg';
import { connectClient, newestAppliedMigration } from '@lms/core/essentials';

/**
 * What a backup, a restore check and a drill read from a database's catalogue: its tables, their
 * row counts, its foreign keys, and the newest applied migration (core's migrator owns that table).
 */

/** Lists every table pg_dump will dump: ordinary tables and partitions, not extension members. */
const TABLES_SQL = `
  SELECT n.nspname || '.' || c.relname AS key, format('%I.%I', n.nspname, c.relname) AS ident
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind = 'r'
     AND n.nspname <> 'information_schema'
     AND n.nspname NOT LIKE 'pg\\_%'
     AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
   ORDER BY n.nspname, c.relname`;

/** A table as manifests and drill reports name it (`schema.table`) and as SQL must quote it. */
export interface TableRef {
  key: string;
  ident: string;
}

export async function listTables(client: pg.Client): Promise<TableRef[]> {
  return (await client.query<TableRef>(TABLES_SQL)).rows;
}

/** The newest applied migration on this connection (inside its snapshot), or null. */
export const newestMigration = (client: pg.Client) => newestAppliedMigration(client);

/** Counts the rows of `tables` on one connection, in its current snapshot. */
export async function countRows(client: pg.Client, tables: TableRef[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of tables) {
    const { rows } = await client.query<{ count: string }>(`SELECT count(*) AS count FROM ${table.ident}`);
    counts[table.key] = Number(rows[0]!.count);
  }
  return counts;
}

/**
 * Counts every table over up to `jobs` connections (the first one is reused), biggest tables
 * first so the lanes finish together; with `analyze`, each lane also ANALYZEs what it counted
 * (and partitioned parents at the end), so statistics exist before the database goes live.
 */
export async function countInParallel(
  url: string,
  first: pg.Client,
  tables: TableRef[],
  options: { jobs: number; signal: AbortSignal; analyze: boolean; expected?: Record<string, number> },
): Promise<Record<string, number>> {
  const lanes = Math.max(1, Math.min(options.jobs, tables.length));
  const clients = [first];
  try {
    for (let index = 1; index < lanes; index++) {
      clients.push(await connectClient(url, { applicationName: 'lmsctl restore check' }));
    }
    const queue = [...tables].sort((a, b) => (options.expected?.[b.key] ?? 0) - (options.expected?.[a.key] ?? 0));
    const counts: Record<string, number> = {};
    await Promise.all(
      clients.map(async (client) => {
        for (let table = queue.shift(); table !== undefined; table = queue.shift()) {
          if (options.signal.aborted) return;
          Object.assign(counts, await countRows(client, [table]));
          if (options.analyze) await client.query(`ANALYZE ${table.ident}`);
        }
      }),
    );
    if (options.analyze) {
      const parents = await first.query<{ ident: string }>(
        `SELECT format('%I.%I', n.nspname, c.relname) AS ident FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'p'`,
      );
      for (const { ident } of parents.rows) await first.query(`ANALYZE ${ident}`);
    }
    return counts;
  } finally {
    await Promise.all(clients.slice(1).map((client) => client.end().catch(() => undefined)));
  }
}

export interface ForeignKey {
  name: string;
  child: string;
  parent: string;
  /** PostgreSQL checked every row when the constraint was added (it was not NOT VALID). */
  validated: boolean;
  orphanSql: string;
}

/** Every foreign key with the query that counts its orphans (MATCH SIMPLE: rows with a NULL key are fine). */
export async function foreignKeys(client: pg.Client): Promise<ForeignKey[]> {
  const { rows } = await client.query<{
    name: string;
    validated: boolean;
    child: string;
    parent: string;
    child_cols: string[];
    parent_cols: string[];
  }>(`
    SELECT c.conname AS name, c.convalidated AS validated,
           format('%I.%I', cn.nspname, cl.relname) AS child,
           format('%I.%I', pn.nspname, pl.relname) AS parent,
           ARRAY(SELECT format('%I', a.attname) FROM unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.ord) AS child_cols,
           ARRAY(SELECT format('%I', a.attname) FROM unnest(c.confkey) WITH ORDINALITY k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.ord) AS parent_cols
      FROM pg_constraint c
      JOIN pg_class cl ON cl.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = cl.relnamespace
      JOIN pg_class pl ON pl.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = pl.relnamespace
     WHERE c.contype = 'f' AND c.conparentid = 0
     ORDER BY 2, 1`);
  return rows.map((row) => {
    const notNull = row.child_cols.map((column) => `c.${column} IS NOT NULL`).join(' AND ');
    const join = row.child_cols.map((column, index) => `p.${row.parent_cols[index]} = c.${column}`).join(' AND ');
    return {
      name: row.name,
      child: row.child,
      parent: row.parent,
      validated: row.validated,
      orphanSql: `SELECT count(*) AS n FROM ${row.child} c WHERE ${notNull} AND NOT EXISTS (SELECT 1 FROM ${row.parent} p WHERE ${join})`,
    };
  });
}
