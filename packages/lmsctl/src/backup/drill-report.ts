import { errorMessage } from '@lms/core/essentials';
import type { ChalkInstance } from 'chalk';
import type pg from 'pg';
import { CliError, ExitCode } from '../errors.js';
import { foreignKeys } from './catalog.js';

/**
 * What a restore drill — of a logical backup (`drill`) or of an Azure point-in-time restore
 * (`azure pitr-drill`) — checks, how its checks make a verdict, and what that verdict means as
 * an exit code and on the terminal: one set of rules for both drills.
 */

export interface DrillCheck {
  kind: 'verify' | 'rows' | 'tables' | 'migration' | 'foreign-key' | 'query' | 'rto' | 'rpo';
  name: string;
  expected: string | number | null;
  found: string | number | null;
  ok: boolean;
  /** A failed `error` check fails the drill; a failed `warning` only with --strict. */
  severity: 'error' | 'warning';
}

export type DrillVerdict = 'pass' | 'fail' | 'error';

/** Application queries a working LMS database answers; each runs only where its tables exist. */
export const APPLICATION_QUERIES: Array<{ name: string; needs: string[]; sql: string }> = [
  {
    name: 'published courses',
    needs: ['public.courses'],
    sql: `SELECT count(*) FILTER (WHERE status = 'published') || ' of ' || count(*) AS found FROM courses`,
  },
  {
    name: 'enrollments per course',
    needs: ['public.enrollments'],
    sql: `SELECT count(*) || ' courses with enrolments, at most ' || coalesce(max(n), 0) || ' per course' AS found
            FROM (SELECT course_id, count(*) AS n FROM enrollments GROUP BY course_id) per_course`,
  },
  {
    name: 'users per role',
    needs: ['public.users'],
    sql: `SELECT coalesce(string_agg(role || ' ' || n, ', ' ORDER BY role), 'no users') AS found
            FROM (SELECT role, count(*) AS n FROM users GROUP BY role) per_role`,
  },
  {
    name: 'certificates of completed enrolments',
    needs: ['public.certificates', 'public.enrollments'],
    sql: `SELECT count(*) || ' certificates' AS found FROM certificates c JOIN enrollments e ON e.id = c.enrollment_id`,
  },
];

/**
 * The checks that need no manifest: every foreign key (orphans counted where PostgreSQL did not
 * validate it while restoring) and the application queries that `include` selects. Shared by
 * the local drill and the Azure point-in-time drill.
 */
export async function integrityChecks(
  client: pg.Client,
  include: (query: (typeof APPLICATION_QUERIES)[number]) => boolean = () => true,
): Promise<DrillCheck[]> {
  const checks: DrillCheck[] = [];
  for (const fk of await foreignKeys(client)) {
    if (fk.validated) {
      // PostgreSQL checked every row against it when the constraint was added (by pg_restore,
      // with --exit-on-error; or originally, in a server-level restore).
      checks.push({
        kind: 'foreign-key',
        name: `${fk.name} (${fk.child} → ${fk.parent}), validated`,
        expected: 0,
        found: 0,
        ok: true,
        severity: 'error',
      });
      continue;
    }
    const orphans = await client.query<{ n: string }>(fk.orphanSql);
    const found = Number(orphans.rows[0]!.n);
    checks.push({
      kind: 'foreign-key',
      name: `${fk.name} (${fk.child} → ${fk.parent}), not validated: orphans counted`,
      expected: 0,
      found,
      ok: found === 0,
      severity: 'error',
    });
  }
  for (const query of APPLICATION_QUERIES.filter(include)) {
    try {
      const { rows } = await client.query<{ found: string }>(query.sql);
      checks.push({
        kind: 'query',
        name: query.name,
        expected: 'answers',
        found: rows[0]?.found ?? '',
        ok: true,
        severity: 'error',
      });
    } catch (error) {
      checks.push({
        kind: 'query',
        name: query.name,
        expected: 'answers',
        found: errorMessage(error),
        ok: false,
        severity: 'error',
      });
    }
  }
  return checks;
}

/** PASS / FAIL / COULD NOT RUN, coloured. */
export function renderVerdict(verdict: DrillVerdict, style: ChalkInstance): string {
  return { pass: style.green('PASS'), fail: style.red('FAIL'), error: style.red('COULD NOT RUN') }[verdict];
}

/**
 * The exit error for a drill's verdict: none for a pass, exit 3 naming the first failed check
 * (warnings count only with `strict`), exit 1 when the drill could not run. The report was
 * already printed, so the error is not printed as JSON again.
 */
export function verdictExitError(
  label: string,
  outcome: { verdict: DrillVerdict; checks: DrillCheck[]; error: string | null },
  strict = false,
): CliError | null {
  if (outcome.verdict === 'pass') return null;
  if (outcome.verdict === 'fail') {
    const first = outcome.checks.find((check) => !check.ok && (check.severity === 'error' || strict));
    return new CliError(
      ExitCode.verification,
      `${label} failed: ${first ? `${first.name}: expected ${first.expected}, found ${first.found}` : 'see the report'}`,
      undefined,
      true,
    );
  }
  return new CliError(ExitCode.failed, `${label} could not run: ${outcome.error ?? 'see the report'}`, undefined, true);
}
