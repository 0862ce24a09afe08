import { describe, expect, it } from 'vitest';
import { loadConfig } from '@lms/core';
import { resolveTimeLimits } from './time-limits.js';

describe('time limits', () => {
  it('default to the configured limits, with the per-queue overrides on top', () => {
    const limits = resolveTimeLimits(loadConfig({}));
    expect(limits.emails).toEqual({ softMs: 240_000, hardMs: 300_000 });
    expect(limits.certificates).toEqual({ softMs: 240_000, hardMs: 300_000 });
    expect(limits.progress).toEqual({ softMs: 60_000, hardMs: 90_000 });
    const configured = resolveTimeLimits(
      loadConfig({ JOB_SOFT_TIME_LIMIT_SECONDS: '20', JOB_HARD_TIME_LIMIT_SECONDS: '30' }),
      { webhooks: { softSeconds: 5, hardSeconds: 8 } },
    );
    expect(configured.emails).toEqual({ softMs: 20_000, hardMs: 30_000 });
    expect(configured.webhooks).toEqual({ softMs: 5000, hardMs: 8000 });
  });

  it('refuse a hard limit that leaves the handler no time after the soft one', () => {
    expect(() =>
      resolveTimeLimits(loadConfig({ JOB_SOFT_TIME_LIMIT_SECONDS: '300', JOB_HARD_TIME_LIMIT_SECONDS: '300' }), {}),
    ).toThrow(/the emails queue's hard time limit \(300 s\) must be longer than its soft limit \(300 s\)/);
  });
});
