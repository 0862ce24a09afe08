import cron from 'node-cron';
import { usageError } from '../errors.js';

/**
 * A cron expression lmsctl accepts for backups and drills, expanded field by field. The same
 * expression must mean the same times under `schedule run` (node-cron), crontab, systemd timers
 * and Windows Task Scheduler, so anything those disagree on is refused with the reason.
 */
export interface CronSchedule {
  expression: string;
  seconds: number[];
  minutes: number[];
  hours: number[];
  /** null: every day of the month. */
  daysOfMonth: number[] | null;
  /** null: every month. */
  months: number[] | null;
  /** 0 = Sunday … 6 = Saturday; null: every day of the week. */
  daysOfWeek: number[] | null;
}

/**
 * Parses and checks `expression` for the option named `option`: 5 fields (minute hour
 * day-of-month month day-of-week), or 6 with seconds first when `allowSeconds` (schedule run only).
 */
export function parseCron(expression: string, option: string, options: { allowSeconds: boolean }): CronSchedule {
  const trimmed = expression.trim().replace(/\s+/g, ' ');
  const fields = trimmed.split(' ');
  const refuse = (reason: string) => usageError(`${option} "${expression}": ${reason}`);
  if (fields.length === 6 && !options.allowSeconds) {
    throw refuse(
      '6 fields (with seconds) only work for `schedule run`; OS schedulers take 5: minute hour day-of-month month day-of-week',
    );
  }
  const validation = cron.validateDetailed(trimmed);
  if (!validation.valid) {
    throw refuse(
      validation.errors
        .map((error) => (error.field === 'expression' ? error.message : `${error.field}: ${error.message}`))
        .join('; '),
    );
  }
  const five = fields.length === 6 ? fields.slice(1) : fields;
  if (/[L#W?]/i.test(five.slice(2).join(' '))) {
    throw refuse('L, W, # and ? are not understood by crontab; use plain values, ranges, lists and steps');
  }
  const [, , dayOfMonth, month, dayOfWeek] = five as [string, string, string, string, string];
  if (dayOfMonth !== '*' && dayOfWeek !== '*') {
    throw refuse(
      'it restricts both day of month and day of week, which crontab reads as either one and other schedulers as both; restrict only one',
    );
  }
  const parsed = cron.parse(trimmed);
  return {
    expression: trimmed,
    seconds: parsed.second,
    minutes: parsed.minute,
    hours: parsed.hour,
    daysOfMonth: dayOfMonth === '*' ? null : (parsed.dayOfMonth as number[]),
    months: month === '*' ? null : parsed.month,
    daysOfWeek: dayOfWeek === '*' ? null : [...new Set((parsed.dayOfWeek as number[]).map((day) => day % 7))].sort(),
  };
}

/** When `schedule run` and `schedule install` back up (daily 02:00) and drill (Sundays 03:00) by default. */
export const DEFAULT_BACKUP_CRON = '0 2 * * *';
export const DEFAULT_DRILL_CRON = '0 3 * * 0';
