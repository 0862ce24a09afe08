import os from 'node:os';

/**
 * The UTC stamps in the names lmsctl gives things — `YYYYMMDD_HHMMSS` in backup and drill report
 * file names, `YYYYMMDDHHMMSS` in the databases a restore or drill creates — and how many
 * pg_restore jobs and counting lanes to use by default.
 */

/** `20261128_141700` for a UTC instant (file names: the date and the time stay readable apart). */
export function fileStamp(at: Date): string {
  const iso = at.toISOString();
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}_${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}`;
}

/** `20261128141700` for a UTC instant (database names: no characters that need quoting). */
export function databaseStamp(at = new Date()): string {
  return fileStamp(at).replace('_', '');
}

/** pg_restore --jobs and the row-count lanes: the machine's CPUs, at most 4 (beyond that the server's disk is the limit). */
export function defaultJobs(): number {
  return Math.min(4, os.availableParallelism());
}
