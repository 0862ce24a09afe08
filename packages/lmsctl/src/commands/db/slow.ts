import type { ChalkInstance } from 'chalk';
import { connectClient, describePostgresUrl } from '@lms/core';
import { formatDuration } from '@lms/core/duration';
import { requireDatabaseUrl, type CommandContext } from '../../context.js';
import { CliError, ExitCode, usageError } from '../../errors.js';
import { table } from '../../output.js';
import { howToEnableStatements, topStatements, type StatementStats } from '../../postgres/statements.js';

export interface SlowOptions {
  /** How many statements (default 10). */
  limit?: number;
}

export interface SlowResult {
  database: string;
  statements: StatementStats[];
}

/**
 * `lmsctl db slow`: the statements of the addressed database that took the most time in total,
 * from pg_stat_statements; without it, one line that says how to enable it (exit 1).
 */
export async function slow(ctx: CommandContext, options: SlowOptions = {}): Promise<SlowResult> {
  const limit = options.limit ?? 10;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    throw usageError('--limit must be a whole number from 1 to 1000');
  const url = requireDatabaseUrl(ctx);
  const { database } = describePostgresUrl(url);
  const client = await connectClient(url, { applicationName: 'lmsctl db slow' });
  try {
    const statements = await topStatements(client, limit);
    if (typeof statements === 'string')
      throw new CliError(ExitCode.failed, howToEnableStatements(statements, database));
    return { database, statements };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Sub-millisecond means are common: keep two decimals below 10 ms. */
const time = (ms: number) => (ms < 10 ? `${ms.toFixed(2)} ms` : formatDuration(ms));

export function renderSlow(result: SlowResult, style: ChalkInstance): string {
  if (result.statements.length === 0) return `pg_stat_statements has recorded no statements in ${result.database} yet`;
  return table(
    ['total', 'calls', 'mean', 'rows', 'query'],
    result.statements.map((statement) => [
      time(statement.totalMs),
      String(statement.calls),
      time(statement.meanMs),
      String(statement.rows),
      statement.query,
    ]),
    style,
  );
}
