import type { ChalkInstance } from 'chalk';
import { connectClient } from '@lms/core';
import { requireDatabaseUrl, type CommandContext } from '../context.js';
import { usageError } from '../errors.js';
import { demoAccountLines, loadDemoData, type SeedResult } from '../lib/dev-stack/demo-data.js';

/**
 * `lmsctl seed`: the demo data (see loadDemoData) in the database of --database-url or
 * DATABASE_URL. Never in production, never over existing users.
 */
export async function seed(ctx: CommandContext): Promise<SeedResult> {
  if (ctx.config.NODE_ENV === 'production') throw usageError('refusing to load demo data with NODE_ENV=production');
  const client = await connectClient(requireDatabaseUrl(ctx), { applicationName: 'lmsctl seed' });
  try {
    return await loadDemoData(client);
  } finally {
    await client.end();
  }
}

/** The result without the generated passwords, for --json (secrets never go there). */
export function seedResultForJson(
  result: SeedResult,
): Omit<SeedResult, 'admin' | 'demoPassword'> & { admin: { email: string } | null } {
  return {
    seeded: result.seeded,
    reason: result.reason,
    admin: result.admin && { email: result.admin.email },
    counts: result.counts,
  };
}

export function renderSeed(result: SeedResult, style: ChalkInstance): string {
  if (!result.seeded) return `nothing seeded: ${result.reason}`;
  const { counts } = result;
  return [
    `${style.green('seeded')} ${counts.users} users, ${counts.courses} courses, ${counts.lessons} lessons, ${counts.quizzes} quizzes, ${counts.enrollments} enrolments`,
    ...demoAccountLines(result),
  ].join('\n');
}
