import { describe, expect, it } from 'vitest';
import { judge, type TrafficSample } from './watch.js';

const limits = { watchMs: 120_000, maxErrorRise: 0.02, maxLatencyFactor: 2 };
const baseline: TrafficSample = { errorShare: 0.005, p99Seconds: 0.2, requestRate: 10 };

describe('the watch window verdict', () => {
  it('passes traffic within the margins of the level before the deploy', () => {
    expect(judge({ errorShare: 0.02, p99Seconds: 0.6, requestRate: 10 }, baseline, limits)).toBeNull();
  });

  it('names a 5xx share above the baseline plus the margin', () => {
    expect(judge({ errorShare: 0.5, p99Seconds: 0.1, requestRate: 10 }, baseline, limits)).toBe(
      'the 5xx share of user requests rose to 50.0 % (before the deploy: 0.5 %; allowed: +2.0 %)',
    );
  });

  it('names a p99 above both the factor and half a second more', () => {
    expect(judge({ errorShare: 0, p99Seconds: 0.8, requestRate: 10 }, baseline, limits)).toMatch(
      /^the p99 latency rose to 800 ms \(before the deploy: 200 ms; allowed: 700 ms\)$/,
    );
  });

  it('says nothing on too little traffic, or without a baseline latency', () => {
    expect(judge({ errorShare: 1, p99Seconds: 9, requestRate: 0.2 }, baseline, limits)).toBeNull();
    expect(
      judge({ errorShare: 0, p99Seconds: 9, requestRate: 10 }, { ...baseline, p99Seconds: null }, limits),
    ).toBeNull();
    // No traffic before the deploy: any 5xx share above the margin still counts.
    expect(
      judge(
        { errorShare: 0.1, p99Seconds: 0.1, requestRate: 10 },
        { errorShare: null, p99Seconds: null, requestRate: null },
        limits,
      ),
    ).toMatch(/rose to 10\.0 %/);
  });
});
