import { InvalidArgumentError } from 'commander';
import { parseDurationMs } from '@lms/core/duration';
import { usageError } from '../errors.js';

/** Commander argument parser for whole numbers ≥ `min`. */
export const integerAtLeast =
  (min: number) =>
  (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < min) {
      throw new InvalidArgumentError(`expected a whole number of at least ${min}`);
    }
    return Number(value);
  };

/** Commander parser for durations such as 30s, 15m, 24h, 7d, 1h30m (returns milliseconds). */
export function durationMs(value: string): number {
  const ms = parseDurationMs(value);
  if (ms === null) throw new InvalidArgumentError('expected a duration with a unit: 30s, 15m, 24h, 7d, 1h30m');
  return ms;
}

/**
 * Commander parser for a PostgreSQL URL on the command line. A value that is not one is a usage
 * error that never repeats the value: it may hold a password (commander's own message would).
 */
export const postgresUrl =
  (option: string) =>
  (value: string): string => {
    if (!/^postgres(ql)?:\/\//i.test(value) || !URL.canParse(value)) {
      throw usageError(
        `${option} is not a PostgreSQL URL`,
        'expected postgres://USER@HOST:5432/DATABASE, a password after USER and a colon, with @ : / ? # % in it written as %40 %3A %2F %3F %23 %25',
      );
    }
    return value;
  };
