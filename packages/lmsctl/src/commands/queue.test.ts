import { FlowProducer, Queue, Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueNames, redisConnectionOptions } from '@lms/core';
import { testRedisPrefix, testRedisUrl } from '@lms/core/testing';
import { runLmsctl, spawnLmsctl } from '../testing/run-cli.js';
import type { WatchSample } from './queue.js';

const prefix = testRedisPrefix('queuecmd');
const connection = redisConnectionOptions(testRedisUrl);
const env = { REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix };
let emails: Queue;
let failedJobId: string;

/** Puts one job of the emails queue in every state BullMQ has. */
async function jobsInEveryState(): Promise<void> {
  emails = new Queue('emails', { connection, prefix });
  const secretData = {
    to: 'a@b.c',
    template: 'welcome',
    props: { password: 'hunter2', link: 'https://u:hunter3@x.example/' },
    idempotencyKey: 'k',
  };
  // Taken by a manual worker: one completes, one fails, one stays active.
  await emails.add('email.send', secretData, { attempts: 1 });
  await emails.add('email.send', { ...secretData, idempotencyKey: 'done' });
  await emails.add('email.send', { ...secretData, idempotencyKey: 'active' });
  const worker = new Worker('emails', null, { connection, prefix, autorun: false });
  const token = 'test-token';
  const failing = await worker.getNextJob(token);
  await failing.moveToFailed(new Error('SMTP said no'), token, false);
  failedJobId = failing.id!;
  const completing = await worker.getNextJob(token);
  await completing.moveToCompleted('sent', token, false);
  await worker.getNextJob(token);
  await worker.close(true);
  await emails.add('email.send', { ...secretData, idempotencyKey: 'waiting' });
  await emails.add('email.send', { ...secretData, idempotencyKey: 'delayed' }, { delay: 3_600_000 });
  await emails.add('email.send', { ...secretData, idempotencyKey: 'prioritized' }, { priority: 5 });
  const flow = new FlowProducer({ connection, prefix });
  await flow.add({
    name: 'email.send',
    queueName: 'emails',
    data: { ...secretData, idempotencyKey: 'parent' },
    children: [{ name: 'email.send', queueName: 'progress', data: {} }],
  });
  await flow.close();
}

beforeAll(async () => {
  await jobsInEveryState();
});

afterAll(async () => {
  for (const name of queueNames) {
    const queue = new Queue(name, { connection, prefix });
    await queue.obliterate({ force: true });
    await queue.close();
  }
  await emails.close();
});

async function lmsctl(args: string[], extra: Record<string, string> = {}) {
  return runLmsctl(['queue', ...args], { env: { ...env, ...extra } });
}

describe('lmsctl queue', () => {
  it('lists every queue with its jobs per state', async () => {
    const run = await lmsctl(['list', '--json']);
    expect(run.exitCode, run.stderr).toBe(0);
    const { queues } = JSON.parse(run.stdout) as {
      queues: Array<{ name: string; counts: Record<string, number>; paused: boolean; oldestWaitingMs: number | null }>;
    };
    expect(queues.map((queue) => queue.name)).toEqual(['emails', 'progress', 'certificates', 'webhooks']);
    expect(queues[0]).toMatchObject({
      paused: false,
      counts: { waiting: 1, active: 1, delayed: 1, prioritized: 1, 'waiting-children': 1, completed: 1, failed: 1 },
      oldestWaitingMs: expect.any(Number),
    });
    const human = await lmsctl(['list']);
    expect(human.stdout).toMatch(/^emails\s+running\s+1\s+1\s+1\s+1\s+1\s+1\s+1/m);
  });

  it('lists failed jobs and shows one with its secrets masked', async () => {
    const jobs = await lmsctl(['jobs', 'emails', '--state', 'failed', '--json']);
    expect(JSON.parse(jobs.stdout).jobs).toEqual([
      expect.objectContaining({ id: failedJobId, failedReason: 'SMTP said no', attemptsMade: 1, attempts: 1 }),
    ]);
    const show = await lmsctl(['show', 'emails', failedJobId]);
    expect(show.exitCode).toBe(0);
    expect(show.stdout).toContain('failed: SMTP said no');
    expect(show.stdout).not.toContain('hunter2');
    expect(show.stdout).not.toContain('hunter3');
    expect(show.stdout).toContain('"password": "[redacted]"');
    expect((await lmsctl(['show', 'emails', 'nope'])).exitCode).toBe(1);
  });

  it('refuses unknown queues (exit 2, listing the known ones) and an unreachable Redis (exit 1)', async () => {
    const unknown = await lmsctl(['jobs', 'sms']);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toContain('unknown queue "sms"');
    expect(unknown.stderr).toContain('emails, progress, certificates, webhooks');
    const down = await lmsctl(['list'], { REDIS_URL: 'redis://:pw@127.0.0.1:1' });
    expect(down.exitCode).toBe(1);
    expect(down.stderr).toBe(
      'error: Redis at redis://:***@127.0.0.1:1 does not answer\ncheck REDIS_URL (or --redis-url) and that Redis is running',
    );
  });

  it('pauses and resumes every queue', async () => {
    expect((await lmsctl(['pause', '--all'])).exitCode).toBe(0);
    const paused = JSON.parse((await lmsctl(['list', '--json'])).stdout) as { queues: Array<{ paused: boolean }> };
    expect(paused.queues.every((queue) => queue.paused)).toBe(true);
    expect((await lmsctl(['resume', '--all'])).stdout).toBe('resumed emails, progress, certificates, webhooks');
    expect((await lmsctl(['pause'])).exitCode).toBe(2);
  });

  it('cleans old finished jobs: counts with --dry-run, asks, then removes', async () => {
    const dry = await lmsctl(['clean', 'emails', '--state', 'completed', '--older-than', '1ms', '--dry-run']);
    expect(dry.stdout).toBe('would remove 1 completed job(s) from emails');
    expect((await lmsctl(['clean', 'emails', '--state', 'completed', '--older-than', '1ms'])).exitCode).toBe(2);
    expect((await lmsctl(['clean', 'emails', '--state', 'completed', '--older-than', '1ms', '--yes'])).stdout).toBe(
      'removed 1 completed job(s) from emails',
    );
    expect(await emails.getCompletedCount()).toBe(0);
  });

  it('retries a failed job, and refuses one that is not failed (exit 2)', async () => {
    const run = await lmsctl(['retry', 'emails', failedJobId]);
    expect(run.stdout).toBe('retried 1 job(s) of emails');
    expect(await (await emails.getJob(failedJobId))!.getState()).toBe('waiting');
    expect((await lmsctl(['retry', 'emails'])).exitCode).toBe(2);

    // In a queue of its own, so no other job of the fixture is taken by this worker.
    const certificates = new Queue('certificates', { connection, prefix });
    const completedJob = await certificates.add('certificate.render', { enrollmentId: '1' });
    const worker = new Worker('certificates', null, { connection, prefix, autorun: false });
    const taken = await worker.getNextJob('retry-token');
    expect(taken.id).toBe(completedJob.id);
    await taken.moveToCompleted('rendered', 'retry-token', false);
    await worker.close(true);
    const refused = await lmsctl(['retry', 'certificates', completedJob.id!]);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toBe(
      `error: job ${completedJob.id} of certificates is completed, not failed: only failed jobs are retried\n` +
        'it already ran to completion; running it again would repeat what it did (an e-mail, a webhook)',
    );
    expect(await certificates.getJobState(completedJob.id!)).toBe('completed');
    await certificates.close();
    const waiting = await lmsctl(['retry', 'emails', failedJobId, '--json']);
    expect(waiting.exitCode).toBe(2);
    expect(JSON.parse(waiting.stdout)).toMatchObject({ error: { code: 'usage', exitCode: 2 } });
    expect(waiting.stderr).toContain(`job ${failedJobId} of emails is waiting, not failed`);
  });

  it('drains only after confirmation, counts what it dropped, and keeps repeatable jobs', async () => {
    // A job scheduler's next run is a delayed job that drain keeps.
    await emails.upsertJobScheduler(
      'digest',
      { pattern: '0 3 * * *' },
      { name: 'email.send', data: { to: 'd@e.f', template: 'digest', props: {} } },
    );
    const notStarted = await emails.getJobCounts('waiting', 'delayed', 'prioritized');
    expect(notStarted).toEqual({ waiting: 2, delayed: 2, prioritized: 1 });
    const refused = await lmsctl(['drain', 'emails']);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain(
      'this drops 4 job(s) of emails that have not started (waiting, delayed, prioritized); running jobs continue, and its 1 repeatable job(s) stay scheduled',
    );
    const done = await lmsctl(['drain', 'emails', '--yes']);
    expect(done.stdout).toBe('dropped 4 job(s) from emails; its 1 repeatable job(s) stay scheduled');
    expect(await emails.getJobCounts('waiting', 'delayed', 'prioritized')).toEqual({
      waiting: 0,
      delayed: 1,
      prioritized: 0,
    });
    const [kept] = await emails.getJobs(['delayed']);
    expect(kept!.repeatJobKey).toBe('digest');
    expect(await emails.getActiveCount()).toBe(1);

    const again = await lmsctl(['drain', 'emails', '--json']);
    expect(again.exitCode).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual({ queue: 'emails', dropped: 0, repeatable: 1 });
  });

  it('watch needs a terminal, except with --json', async () => {
    const run = await lmsctl(['watch']);
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toContain('queue watch needs a terminal');

    const watch = spawnLmsctl(['queue', 'watch', '--json', '--interval', '50ms'], { env });
    try {
      const lines: string[] = [];
      let pending = '';
      await new Promise<void>((resolve, reject) => {
        watch.stdout.on('data', (chunk: Buffer) => {
          const parts = (pending + chunk.toString('utf8')).split('\n');
          pending = parts.pop() ?? '';
          lines.push(...parts);
          if (lines.length >= 2) resolve();
        });
        watch.stdout.once('end', () => reject(new Error(`watch ended early: ${lines.join('\n')}`)));
      });
      watch.kill('SIGINT');
      const ended = await watch;
      expect(ended.exitCode, String(ended.stderr)).toBe(0);
      const [first, second] = lines.map((line) => JSON.parse(line) as WatchSample);
      expect(first!.queues.map((queue) => queue.name)).toEqual(['emails', 'progress', 'certificates', 'webhooks']);
      expect(first!.queues[0]).toMatchObject({ counts: { active: 1 }, completedPerMinute: null });
      expect(second!.queues[0]!.completedPerMinute).toEqual(expect.any(Number));
    } finally {
      if (watch.exitCode === null) process.kill(-watch.pid!, 'SIGKILL');
    }
  });
});
