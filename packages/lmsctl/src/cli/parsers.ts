import { InvalidArgumentError } from 'commander';
import { parseDurationMs } from '@lms/core/duration';

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
