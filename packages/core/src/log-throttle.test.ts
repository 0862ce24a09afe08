import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ThrottledLog } from './log-throttle.js';
import { createLogger } from './logger.js';

describe('ThrottledLog', () => {
  it('logs the first of each kind at once, then one line per interval with the count it stands for', async () => {
    const stream = new PassThrough();
    const lines: Array<Record<string, unknown>> = [];
    stream.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean))
        lines.push(JSON.parse(line) as Record<string, unknown>);
    });
    let now = 1_000_000;
    const log = new ThrottledLog(createLogger({ destination: stream }), 60_000, () => now);
    for (let i = 0; i < 1000; i++) log.warn('MOVED', { queue: 'emails' }, 'worker error: MOVED 1234 10.0.0.2:7001');
    log.error('ECONNREFUSED', {}, 'worker error: connect ECONNREFUSED');
    now += 60_000;
    log.warn('MOVED', { queue: 'emails' }, 'worker error: MOVED 1234 10.0.0.2:7001');
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.map((line) => [line.level, line.msg, line.suppressed])).toEqual([
      ['warn', 'worker error: MOVED 1234 10.0.0.2:7001', undefined],
      ['error', 'worker error: connect ECONNREFUSED', undefined],
      ['warn', 'worker error: MOVED 1234 10.0.0.2:7001 (999 more like it in the 60 s since the last such line)', 999],
    ]);
  });
});
