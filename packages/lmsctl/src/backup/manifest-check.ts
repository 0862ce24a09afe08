import type pg from 'pg';
import type { BackupManifest } from './archive/manifest.js';
import { countInParallel, listTables, newestMigration, type TableRef } from './catalog.js';

/**
 * A restored database compared with the manifest of the backup it came from: the migration
 * version, the tables (none missing, none extra) and every table's row count. A restore refuses
 * to swap in what does not match; a drill records each comparison as a check.
 */
export interface ManifestComparison {
  migration: { expected: number | null; found: number | null; ok: boolean };
  /** Tables present in the database; null when the backup has no row counts (--no-counts). */
  tables: { present: TableRef[]; missing: string[]; extra: string[]; ok: boolean } | null;
  /** Every table of the manifest with its expected and counted rows (found: null when missing). */
  rows: Array<{ table: string; expected: number; found: number | null; ok: boolean }> | null;
}

/**
 * Compares the database `first` is connected to (at `url`) with `manifest`, counting the
 * manifest's tables over up to `jobs` connections; with `analyze`, each counted table is also
 * ANALYZEd (a restore about to go live wants statistics).
 */
export async function compareWithManifest(
  url: string,
  first: pg.Client,
  manifest: BackupManifest,
  options: { jobs: number; signal: AbortSignal; analyze: boolean },
): Promise<ManifestComparison> {
  const migration = await newestMigration(first);
  const expectedMigration = manifest.migration?.version ?? null;
  const foundMigration = migration?.version ?? null;
  const comparison: ManifestComparison = {
    migration: { expected: expectedMigration, found: foundMigration, ok: expectedMigration === foundMigration },
    tables: null,
    rows: null,
  };
  const expected = manifest.tables;
  if (!expected) return comparison;
  const present = await listTables(first);
  const presentKeys = new Set(present.map((table) => table.key));
  const missing = Object.keys(expected).filter((key) => !presentKeys.has(key));
  const extra = [...presentKeys].filter((key) => !(key in expected));
  comparison.tables = { present, missing, extra, ok: missing.length === 0 && extra.length === 0 };
  const counts = await countInParallel(
    url,
    first,
    present.filter((table) => table.key in expected),
    { ...options, expected },
  );
  comparison.rows = Object.entries(expected).map(([table, rows]) => {
    const found = counts[table] ?? null;
    return { table, expected: rows, found, ok: found === rows };
  });
  return comparison;
}
