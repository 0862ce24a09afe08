import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, freePort } from '@lms/core/testing';
import { jobIdFor } from '@lms/core/queue';
import { completedEnrollment, insertSubscription } from './testing/factories.js';
import { spawnWorker, type SpawnedWorker } from './testing/spawn-worker.js';
import {
  createWorkerTestEnv,
  eventually,
  outboxJobs,
  waitForJobState,
  type WorkerTestEnv,
} from './testing/worker-harness.js';

let env: WorkerTestEnv;
let storage: string;
const spawned: SpawnedWorker[] = [];

beforeAll(async () => {
  env = await createWorkerTestEnv('main');
  storage = await mkdtemp(path.join(os.tmpdir(), 'lms-worker-main-'));
  await insertSubscription(env.db, {
    url: 'https://hooks.example.com/lms',
    events: ['certificate.issued'],
    secret: 's',
  });
});

afterAll(async () => {
  for (const worker of spawned) if (worker.child.exitCode === null) worker.child.kill('SIGKILL');
  await env.cleanup();
  await rm(storage, { recursive: true, force: true });
});

async function start(args: string[], extra: Record<string, string> = {}) {
  const port = await freePort();
  const worker = spawnWorker(
    // Fast stalled-job recovery: a dead worker's job is free again about 2 s after it died.
    ['--lock-duration', '1500', '--stalled-interval', '500', ...args],
    env.vars({ WORKER_METRICS_PORT: String(port), CERTIFICATE_STORAGE_DIR: storage, LOG_LEVEL: 'info', ...extra }),
  );
  spawned.push(worker);
  await worker.waitForLog(/"msg":"worker started"/);
  return { worker, url: `http://127.0.0.1:${port}` };
}

/** Holds the enrolment row locked, so a certificate job blocks mid-way (inside its transaction). */
async function lockEnrollment(enrollmentId: string): Promise<{ release: () => Promise<void> }> {
  const client: pg.PoolClient = await env.db.connect();
  await client.query('BEGIN');
  await client.query('SELECT 1 FROM enrollments WHERE id = $1 FOR UPDATE', [enrollmentId]);
  return {
    release: async () => {
      await client.query('COMMIT');
      client.release();
    },
  };
}

async function count(sql: string, params: unknown[]): Promise<number> {
  const { rows } = await env.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM (${sql}) AS rows`, params);
  return rows[0]!.n;
}

describe('the worker process', () => {
  it('serves /health and /metrics, and stops on SIGTERM', async () => {
    const { worker, url } = await start(['--queues', 'emails,progress', '--scheduler']);
    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({
      status: 'ok',
      redis: 'ok',
      queues: ['emails', 'progress'],
      scheduler: true,
    });
    const metrics = await eventually(async () => {
      const text = await (await fetch(`${url}/metrics`)).text();
      return text.includes('lms_queue_jobs{') && text;
    });
    expect(metrics).toContain('# TYPE lms_jobs_total counter');
    // Failure series exist before the first failure, so rate() sees it.
    expect(metrics).toContain('lms_jobs_total{queue="emails",name="email.send",status="failed"} 0');
    expect(metrics).toContain('# TYPE lms_job_duration_seconds histogram');
    expect(metrics).toContain('lms_queue_jobs{queue="emails",state="delayed"} 1');
    expect(metrics).toContain('process_cpu_user_seconds_total');
    expect((await fetch(`${url}/nope`)).status).toBe(404);
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toEqual({ code: 0, signal: null });
    expect(worker.stdout()).toMatch(/"msg":"stopped"/);
  });

  it('recovers a job whose worker was SIGKILLed mid-run: another worker completes it, its effects exist once', async () => {
    const { enrollmentId } = await completedEnrollment(env.db, { name: 'Ada Lovelace' });
    const lock = await lockEnrollment(enrollmentId);
    const first = await start(['--queues', 'certificates']);
    const jobId = jobIdFor('certificate.render', enrollmentId);
    await env.producer.enqueue('certificate.render', { enrollmentId }, { jobId });
    await waitForJobState(env.queue('certificates'), jobId, 'active');
    // Give the handler time to reach the locked row: it is now inside its transaction.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await count('SELECT 1 FROM certificates WHERE enrollment_id = $1', [enrollmentId])).toBe(0);
    first.worker.child.kill('SIGKILL');
    expect(await first.worker.exited).toEqual({ code: null, signal: 'SIGKILL' });
    await lock.release();

    const second = await start(['--queues', 'certificates']);
    const job = await waitForJobState(env.queue('certificates'), jobId, 'completed', 20_000);
    expect(job.stalledCounter).toBe(1);
    expect(await count('SELECT 1 FROM certificates WHERE enrollment_id = $1', [enrollmentId])).toBe(1);
    expect(await readdir(storage)).toEqual([`${enrollmentId}.pdf`]);
    expect(
      await count(`SELECT 1 FROM webhook_events WHERE type = 'certificate.issued' AND payload->>'enrollmentId' = $1`, [
        enrollmentId,
      ]),
    ).toBe(1);
    expect(await count('SELECT 1 FROM enrollment_follow_ups WHERE enrollment_id = $1', [enrollmentId])).toBe(1);
    const emails = await outboxJobs(env.db, 'email.send');
    expect(emails.map((email) => email.id)).toEqual([jobIdFor('email.send', `certificate-issued-${enrollmentId}`)]);
    second.worker.child.kill('SIGTERM');
    expect((await second.worker.exited).code).toBe(0);
  });

  it('on SIGTERM takes no new job and lets the running one finish before it exits', async () => {
    const running = await completedEnrollment(env.db);
    const later = await completedEnrollment(env.db);
    const lock = await lockEnrollment(running.enrollmentId);
    const { worker, url } = await start(['--queues', 'certificates']);
    const runningJob = jobIdFor('certificate.render', running.enrollmentId);
    await env.producer.enqueue('certificate.render', { enrollmentId: running.enrollmentId }, { jobId: runningJob });
    await waitForJobState(env.queue('certificates'), runningJob, 'active');

    worker.child.kill('SIGTERM');
    await worker.waitForLog(/"msg":"stopping: no new jobs/);
    const laterJob = jobIdFor('certificate.render', later.enrollmentId);
    await env.producer.enqueue('certificate.render', { enrollmentId: later.enrollmentId }, { jobId: laterJob });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(worker.child.exitCode).toBeNull();
    expect((await fetch(`${url}/health`)).status).toBe(503);

    await lock.release();
    expect(await worker.exited).toEqual({ code: 0, signal: null });
    expect(await (await env.queue('certificates').getJob(runningJob))!.getState()).toBe('completed');
    expect(await (await env.queue('certificates').getJob(laterJob))!.getState()).toBe('waiting');
  });

  it('refuses a bad command line (2), a bad configuration and an unmigrated database (1)', async () => {
    const usage = spawnWorker(['--queues', 'emails,sms'], {});
    expect((await usage.exited).code).toBe(2);
    expect(usage.stderr()).toContain('unknown queue "sms": choose from emails, progress, certificates, webhooks');

    const config = spawnWorker([], { JOB_ATTEMPTS: 'many', DATABASE_URL: 'mysql://x' });
    expect((await config.exited).code).toBe(1);
    // Every problem at once, each on its own line.
    expect(config.stderr()).toContain('DATABASE_URL: must be a postgres:// or postgresql:// URL\n');
    expect(config.stderr()).toContain('JOB_ATTEMPTS: must be a whole number from 1 to 100\n');

    const empty = await createTestDatabase('main_empty');
    try {
      // Everything else its own, so had it started it would touch nothing of anyone else's.
      const unmigrated = spawnWorker(
        [],
        env.vars({ DATABASE_URL: empty.url, WORKER_METRICS_PORT: String(await freePort()), LOG_LEVEL: 'info' }),
      );
      expect((await unmigrated.exited).code).toBe(1);
      expect(unmigrated.stdout()).toMatch(/the database is not migrated .*run `pnpm lmsctl migrate` first/);
    } finally {
      await empty.drop();
    }
  });
});
