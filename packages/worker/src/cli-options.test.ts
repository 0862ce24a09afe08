import { describe, expect, it } from 'vitest';
import { parseWorkerArgs, schedulerEnabled, UsageError } from './cli-options.js';

describe('the worker command line', () => {
  it('works on every queue by default, on a subset, or on none (scheduler only)', () => {
    expect(parseWorkerArgs([]).queues).toEqual(['emails', 'progress', 'certificates', 'webhooks']);
    expect(parseWorkerArgs(['--queues', 'webhooks, emails,webhooks']).queues).toEqual(['webhooks', 'emails']);
    expect(parseWorkerArgs(['--queues', 'none', '--scheduler'])).toMatchObject({ queues: [], scheduler: true });
    expect(() => parseWorkerArgs(['--queues', ''])).toThrow(UsageError);
    expect(() => parseWorkerArgs(['--queues', 'emails,sms'])).toThrow(/unknown queue "sms"/);
  });

  it('runs the scheduler when asked, else as WORKER_SCHEDULER says, else in development only', () => {
    expect(
      schedulerEnabled(parseWorkerArgs(['--no-scheduler']).scheduler, {
        WORKER_SCHEDULER: true,
        NODE_ENV: 'development',
      }),
    ).toBe(false);
    expect(schedulerEnabled(undefined, { WORKER_SCHEDULER: undefined, NODE_ENV: 'development' })).toBe(true);
    expect(schedulerEnabled(undefined, { WORKER_SCHEDULER: undefined, NODE_ENV: 'production' })).toBe(false);
    expect(schedulerEnabled(undefined, { WORKER_SCHEDULER: true, NODE_ENV: 'production' })).toBe(true);
    expect(() => parseWorkerArgs(['--scheduler', '--no-scheduler'])).toThrow(/contradict/);
  });

  it('takes the stalled-job settings in milliseconds and refuses anything else', () => {
    expect(parseWorkerArgs(['--lock-duration', '1500', '--stalled-interval', '500']).recovery).toEqual({
      lockDurationMs: 1500,
      stalledIntervalMs: 500,
    });
    expect(() => parseWorkerArgs(['--lock-duration', '1.5s'])).toThrow(/--lock-duration must be a whole number/);
    expect(() => parseWorkerArgs(['--bogus'])).toThrow(UsageError);
  });
});
