import type pg from 'pg';

/**
 * Bloat estimates of the user tables and btree indexes of the connected database, from the
 * catalogue alone: the well-known estimation queries of ioguix/pgsql-bloat-estimation, which
 * compare the pages a relation occupies (pg_class.relpages) with the pages its rows would need
 * at their average width (pg_stats) and fillfactor.
 *
 * Not pgstattuple: that extension reads every page of every relation (a full scan of the
 * database, a long I/O burst on a large one), must be created in the database, and needs a
 * superuser or pg_stat_scan_tables, which managed servers rarely grant. The estimate costs a
 * catalogue query and works wherever lmsctl can connect; its price is that it is an estimate,
 * as fresh as the last ANALYZE (a relation never analyzed has none).
 */

export interface TableBloat {
  schema: string;
  table: string;
  /** pg_relation_size now (heap only). */
  sizeBytes: number;
  /** Estimated space beyond what the live rows need at the table's fillfactor; null without statistics. */
  bloatBytes: number | null;
  /** bloatBytes / size, 0…1; null without statistics. */
  bloatRatio: number | null;
  liveRows: number;
  deadRows: number;
  lastVacuum: string | null;
  lastAnalyze: string | null;
}

export interface IndexBloat {
  schema: string;
  table: string;
  index: string;
  sizeBytes: number;
  bloatBytes: number | null;
  bloatRatio: number | null;
  /** REINDEX INDEX CONCURRENTLY cannot rebuild it (an exclusion constraint's index) or it is invalid. */
  reindexable: boolean;
}

const USER_SCHEMAS = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'`;

// ioguix table_bloat.sql, restricted to user tables and joined to their activity counters.
const TABLE_BLOAT_SQL = `
WITH estimate AS (
  SELECT tblid,
         CASE WHEN reltuples < 0 OR is_na THEN NULL
              ELSE ceil(reltuples / ((bs - page_hdr) * fillfactor / (tpl_size * 100))) + ceil(toasttuples / 4) END AS est_pages_ff,
         bs
    FROM (
      SELECT (4 + tpl_hdr_size + tpl_data_size + (2 * ma)
              - CASE WHEN tpl_hdr_size % ma = 0 THEN ma ELSE tpl_hdr_size % ma END
              - CASE WHEN ceil(tpl_data_size)::int % ma = 0 THEN ma ELSE ceil(tpl_data_size)::int % ma END) AS tpl_size,
             reltuples, toasttuples, bs, page_hdr, tblid, fillfactor, is_na
        FROM (
          SELECT tbl.oid AS tblid, tbl.reltuples, coalesce(toast.reltuples, 0) AS toasttuples,
                 coalesce(substring(array_to_string(tbl.reloptions, ' ') FROM 'fillfactor=([0-9]+)')::smallint, 100) AS fillfactor,
                 current_setting('block_size')::numeric AS bs,
                 CASE WHEN version() ~ 'mingw32' OR version() ~ '64-bit|x86_64|ppc64|ia64|amd64' THEN 8 ELSE 4 END AS ma,
                 24 AS page_hdr,
                 23 + CASE WHEN max(coalesce(s.null_frac, 0)) > 0 THEN (7 + count(s.attname)) / 8 ELSE 0::int END AS tpl_hdr_size,
                 sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 0)) AS tpl_data_size,
                 bool_or(att.atttypid = 'pg_catalog.name'::regtype)
                   OR sum(CASE WHEN att.attnum > 0 THEN 1 ELSE 0 END) <> count(s.attname) AS is_na
            FROM pg_attribute att
            JOIN pg_class tbl ON att.attrelid = tbl.oid
            JOIN pg_namespace n ON n.oid = tbl.relnamespace
            LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = tbl.relname
                                AND s.inherited = false AND s.attname = att.attname
            LEFT JOIN pg_class toast ON tbl.reltoastrelid = toast.oid
           WHERE NOT att.attisdropped AND att.attnum > 0 AND tbl.relkind IN ('r', 'm') AND ${USER_SCHEMAS}
           GROUP BY tbl.oid, tbl.reltuples, toast.reltuples, tbl.reloptions
        ) AS columns
    ) AS tuples
)
SELECT n.nspname AS schema, c.relname AS "table",
       pg_relation_size(c.oid) + coalesce(pg_relation_size(c.reltoastrelid), 0) AS size,
       e.est_pages_ff * e.bs AS needed,
       coalesce(st.n_live_tup, 0) AS live, coalesce(st.n_dead_tup, 0) AS dead,
       greatest(st.last_vacuum, st.last_autovacuum) AS last_vacuum,
       greatest(st.last_analyze, st.last_autoanalyze) AS last_analyze
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN estimate e ON e.tblid = c.oid
  LEFT JOIN pg_stat_user_tables st ON st.relid = c.oid
 WHERE c.relkind IN ('r', 'm') AND ${USER_SCHEMAS}
 ORDER BY n.nspname, c.relname`;

// ioguix btree_bloat.sql, restricted to indexes of user tables.
const INDEX_BLOAT_SQL = `
WITH estimate AS (
  SELECT idxoid,
         coalesce(1 + ceil(reltuples / floor((bs - pageopqdata - pagehdr) * fillfactor / (100 * (4 + nulldatahdrwidth)::float))), 0) AS est_pages_ff,
         bs, is_na
    FROM (
      SELECT bs, reltuples, idxoid, fillfactor, pagehdr, pageopqdata, is_na,
             (index_tuple_hdr_bm
              + maxalign - CASE WHEN index_tuple_hdr_bm % maxalign = 0 THEN maxalign ELSE index_tuple_hdr_bm % maxalign END
              + nulldatawidth + maxalign - CASE WHEN nulldatawidth = 0 THEN 0
                                                WHEN nulldatawidth::integer % maxalign = 0 THEN maxalign
                                                ELSE nulldatawidth::integer % maxalign END)::numeric AS nulldatahdrwidth
        FROM (
          SELECT i.reltuples, i.idxoid, i.fillfactor, current_setting('block_size')::numeric AS bs,
                 CASE WHEN version() ~ 'mingw32' OR version() ~ '64-bit|x86_64|ppc64|ia64|amd64' THEN 8 ELSE 4 END AS maxalign,
                 24 AS pagehdr, 16 AS pageopqdata,
                 CASE WHEN max(coalesce(s.null_frac, 0)) = 0 THEN 8 ELSE 8 + ((32 + 8 - 1) / 8) END AS index_tuple_hdr_bm,
                 sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 1024)) AS nulldatawidth,
                 max(CASE WHEN i.atttypid = 'pg_catalog.name'::regtype THEN 1 ELSE 0 END) > 0 AS is_na
            FROM (
              SELECT ct.relname AS tblname, ct.relnamespace, ic.idxname, ic.reltuples, ic.idxoid, ic.fillfactor,
                     coalesce(a1.attname, a2.attname) AS attname, coalesce(a1.atttypid, a2.atttypid) AS atttypid,
                     CASE WHEN a1.attnum IS NULL THEN ic.idxname ELSE ct.relname END AS attrelname
                FROM (
                  SELECT idxname, reltuples, tbloid, idxoid, fillfactor, indkey, generate_series(1, indnatts) AS attpos
                    FROM (
                      SELECT ci.relname AS idxname, ci.reltuples, i.indrelid AS tbloid, i.indexrelid AS idxoid,
                             coalesce(substring(array_to_string(ci.reloptions, ' ') FROM 'fillfactor=([0-9]+)')::smallint, 90) AS fillfactor,
                             i.indnatts, string_to_array(textin(int2vectorout(i.indkey)), ' ')::int[] AS indkey
                        FROM pg_index i
                        JOIN pg_class ci ON ci.oid = i.indexrelid
                       WHERE ci.relam = (SELECT oid FROM pg_am WHERE amname = 'btree') AND ci.relpages > 0
                    ) AS idx_data
                ) AS ic
                JOIN pg_class ct ON ct.oid = ic.tbloid
                LEFT JOIN pg_attribute a1 ON ic.indkey[ic.attpos] <> 0 AND a1.attrelid = ic.tbloid AND a1.attnum = ic.indkey[ic.attpos]
                LEFT JOIN pg_attribute a2 ON ic.indkey[ic.attpos] = 0 AND a2.attrelid = ic.idxoid AND a2.attnum = ic.attpos
            ) i
            JOIN pg_namespace n ON n.oid = i.relnamespace
            JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = i.attrelname AND s.attname = i.attname
           WHERE ${USER_SCHEMAS}
           GROUP BY i.reltuples, i.idxoid, i.fillfactor
        ) AS rows_data_stats
    ) AS rows_hdr_pdg_stats
)
SELECT n.nspname AS schema, t.relname AS "table", c.relname AS index,
       pg_relation_size(c.oid) AS size,
       CASE WHEN e.is_na OR c.reltuples < 0 THEN NULL ELSE e.est_pages_ff * e.bs END AS needed,
       x.indisvalid AND NOT EXISTS (
         SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid AND k.contype = 'x'
       ) AS reindexable
  FROM pg_index x
  JOIN pg_class c ON c.oid = x.indexrelid
  JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN estimate e ON e.idxoid = c.oid
 WHERE t.relkind IN ('r', 'm') AND ${USER_SCHEMAS}
 ORDER BY n.nspname, t.relname, c.relname`;

function bloatOf(size: number, needed: string | null): { bloatBytes: number | null; bloatRatio: number | null } {
  if (needed === null) return { bloatBytes: null, bloatRatio: null };
  const bloatBytes = Math.max(0, size - Number(needed));
  return { bloatBytes, bloatRatio: size > 0 ? bloatBytes / size : 0 };
}

/** Every user table of the connected database with its estimated bloat and dead rows. */
export async function estimateTableBloat(client: pg.Client): Promise<TableBloat[]> {
  const { rows } = await client.query<{
    schema: string;
    table: string;
    size: string;
    needed: string | null;
    live: string;
    dead: string;
    last_vacuum: Date | null;
    last_analyze: Date | null;
  }>(TABLE_BLOAT_SQL);
  return rows.map((row) => ({
    schema: row.schema,
    table: row.table,
    sizeBytes: Number(row.size),
    ...bloatOf(Number(row.size), row.needed),
    liveRows: Number(row.live),
    deadRows: Number(row.dead),
    lastVacuum: row.last_vacuum?.toISOString() ?? null,
    lastAnalyze: row.last_analyze?.toISOString() ?? null,
  }));
}

/** Every index of a user table with its estimated bloat (btree only: the estimate knows no other). */
export async function estimateIndexBloat(client: pg.Client): Promise<IndexBloat[]> {
  const { rows } = await client.query<{
    schema: string;
    table: string;
    index: string;
    size: string;
    needed: string | null;
    reindexable: boolean;
  }>(INDEX_BLOAT_SQL);
  return rows.map((row) => ({
    schema: row.schema,
    table: row.table,
    index: row.index,
    sizeBytes: Number(row.size),
    ...bloatOf(Number(row.size), row.needed),
    reindexable: row.reindexable,
  }));
}
