import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';

function capture() {
  const stream = new PassThrough();
  const lines: Array<Record<string, unknown>> = [];
  stream.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n').filter(Boolean))
      lines.push(JSON.parse(line) as Record<string, unknown>);
  });
  return { logger: createLogger({ name: 'test', destination: stream }), lines, raw: () => JSON.stringify(lines) };
}

describe('createLogger', () => {
  it('redacts secret fields at any depth', async () => {
    const { logger, lines, raw } = capture();
    logger.info(
      {
        password: 'p1',
        user: { email: 'a@b.c', password: 'p2' },
        req: { headers: { authorization: 'Bearer t1' } },
        refreshToken: 'r1',
        job: { data: { webhook: { secret: 's1' } } },
      },
      'login',
    );
    logger.child({ token: 't2', jobId: 'j1' }).info('child');
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines).toHaveLength(2);
    for (const secret of ['p1', 'p2', 'Bearer t1', 'r1', 's1', 't2']) expect(raw()).not.toContain(secret);
    expect(lines[1]).toMatchObject({ msg: 'child', token: '[redacted]', jobId: 'j1' });
    expect(lines[0]).toMatchObject({ msg: 'login', name: 'test', level: 'info', user: { email: 'a@b.c' } });
  });

  it('masks passwords in URLs inside messages, fields and errors', async () => {
    const { logger, lines, raw } = capture();
    logger.warn({ target: 'postgres://lms:hunter2@db/lms' }, 'connecting to redis://:hunter3@cache:6379');
    logger.error({ err: new Error('cannot reach postgres://lms:hunter4@db/lms') }, 'failed');
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines).toHaveLength(2);
    for (const secret of ['hunter2', 'hunter3', 'hunter4']) expect(raw()).not.toContain(secret);
    expect(lines[0]).toMatchObject({
      target: 'postgres://lms:***@db/lms',
      msg: 'connecting to redis://:***@cache:6379',
    });
    expect((lines[1]!.err as { message: string }).message).toBe('cannot reach postgres://lms:***@db/lms');
  });
});
