import type { ChalkInstance } from 'chalk';
import { connectClient, describePostgresUrl, withDatabase } from '@lms/core/essentials';
import { requireSessionDatabaseUrl, type CommandContext } from '../../context.js';
import { confirmOrRefuse } from '../../lib/confirm.js';
import { dropDatabase, isAbandoned, isLeftoverOf, markedDatabases } from '../../postgres/admin.js';
import { formatBytes } from '../../lib/progress.js';
import { table } from '../../output.js';

export interface RestoreCleanupResult {
  /** Whose leftovers were looked for: a database name, or every database's with --all. */
  scope: string;
  dropped: Array<{ database: string; kind: string; sizeBytes: number }>;
  /** Leftovers of other databases, left alone without --all. */
  leftAlone: string[];
}

/**
 * Drops what restores of the addressed database left: the copies they kept
 * (`<name>_pre_restore_…`) and abandoned half-built ones (`<name>_restoring_…`, drill scratch
 * databases of its backups). Other databases' leftovers only with `all`, listed first.
 */
export async function restoreCleanup(
  ctx: CommandContext,
  options: { targetDatabaseUrl?: string; all?: boolean } = {},
): Promise<RestoreCleanupResult> {
  const url = options.targetDatabaseUrl ?? requireSessionDatabaseUrl(ctx);
  const { host, port, database } = describePostgresUrl(url);
  const scope = options.all ? 'every database' : database;
  const admin = await connectClient(withDatabase(url, 'postgres'), { applicationName: 'lmsctl restore cleanup' });
  try {
    const leftovers = (await markedDatabases(admin)).filter(
      (db) => db.marker.lmsctl === 'pre-restore' || isAbandoned(db),
    );
    const candidates = leftovers.filter((db) => options.all || isLeftoverOf(db, database));
    const leftAlone = leftovers.filter((db) => !candidates.includes(db)).map((db) => db.name);
    if (leftAlone.length) {
      ctx.out.info(
        `leaving ${leftAlone.length} leftover(s) of other databases alone: ${leftAlone.join(', ')} (--all cleans them too)`,
      );
    }
    if (candidates.length === 0) return { scope, dropped: [], leftAlone };
    ctx.out.info(
      `this drops ${candidates.length} database(s) on ${host}:${port} and all their data:\n` +
        candidates
          .map(
            (db) =>
              `  ${db.name} (${formatBytes(db.sizeBytes)}, ${db.marker.lmsctl === 'pre-restore' ? `kept by the restore of ${db.marker.target} at ${db.marker.at}` : 'left by an interrupted run'})`,
          )
          .join('\n'),
    );
    await confirmOrRefuse(`Drop ${candidates.length} database(s)?`, {
      yes: ctx.yes,
      action: `drop ${candidates.length} database(s)`,
    });
    for (const db of candidates) await dropDatabase(admin, db.name);
    return {
      scope,
      leftAlone,
      dropped: candidates.map((db) => ({ database: db.name, kind: db.marker.lmsctl, sizeBytes: db.sizeBytes })),
    };
  } finally {
    await admin.end().catch(() => undefined);
  }
}

export function renderRestoreCleanup(result: RestoreCleanupResult, style: ChalkInstance): string {
  if (result.dropped.length === 0) return `nothing to clean up for ${result.scope}`;
  return table(
    ['DROPPED', 'KIND', 'SIZE'],
    result.dropped.map((entry) => [entry.database, entry.kind, formatBytes(entry.sizeBytes)]),
    style,
  );
}
