import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@lms/core/testing';
import { fakePgBinDir, seedLmsDatabase } from '../../testing/backup-fixtures.js';
import { testContext } from '../../testing/context.js';
import { runLmsctl, spawnLmsctl } from '../../testing/run-cli.js';
import { scheduleRun, type ScheduleEvent } from './run.js';

let database: TestDatabase;
let work: string;
let slowBin: string;

beforeAll(async () => {
  database = await createTestDatabase('schedule');
  await seedLmsDatabase(database.url, { users: 5 });
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-schedule-'));
  // Every backup takes about 2.2 s, so a per-second schedule keeps ticking while one runs.
  slowBin = await fakePgBinDir({
    pg_dump: 'case "$1" in --version) exec "$REAL" --version;; esac\nsleep 2.2\nexec "$REAL" "$@"',
  });
});

afterAll(async () => {
  await database.drop();
  await rm(work, { recursive: true, force: true });
  await rm(slowBin, { recursive: true, force: true });
});

const YEARLY = '0 0 1 1 *';

function envFor(name: string) {
  return {
    DATABASE_URL: database.url,
    LMS_BACKUP_DIR: path.join(work, name, 'db'),
    LMS_DRILL_DIR: path.join(work, name, 'drills'),
    LMS_PG_BIN_DIR: slowBin,
  };
}

function intervals(events: ScheduleEvent[]): Array<[number, number]> {
  const result: Array<[number, number]> = [];
  let start: number | null = null;
  for (const event of events.filter((entry) => entry.kind === 'backup')) {
    if (event.event === 'started') {
      expect(start, 'a backup started while another was running').toBeNull();
      start = Date.parse(event.at);
    } else if (event.event === 'finished' || event.event === 'failed') {
      result.push([start!, Date.parse(event.at)]);
      start = null;
    }
  }
  return result;
}

describe('lmsctl schedule run', () => {
  it('never overlaps two runs of a per-second backup schedule, and waits for the running one when stopped', async () => {
    const env = envFor('overlap');
    await mkdir(env.LMS_BACKUP_DIR, { recursive: true });
    const output = testContext({ cwd: work, env, json: true });
    const { ctx } = output;
    const stop = new AbortController();
    const running = scheduleRun(ctx, {
      backup: '* * * * * *',
      drill: YEARLY,
      pruneKeep: 10,
      stop: stop.signal,
    });
    // Stop while the second backup is running (not at a fixed time, which on a busy machine may
    // fall between two runs), so the stop has a running backup to wait for.
    for (let waited = 0; waited < 30_000; waited += 20) {
      const backupEvents = output
        .stdout()
        .split('\n')
        .filter((line) => line.includes('"kind":"backup"'));
      const started = backupEvents.filter((line) => line.includes('"event":"started"')).length;
      if (started >= 2 && backupEvents.at(-1)!.includes('"event":"started"')) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    stop.abort();
    const result = await running;

    const ran = intervals(result.events);
    expect(ran.length).toBeGreaterThanOrEqual(2);
    for (let index = 1; index < ran.length; index++) expect(ran[index]![0]).toBeGreaterThanOrEqual(ran[index - 1]![1]);
    expect(result.events.filter((event) => event.event === 'skipped').length).toBeGreaterThan(0);
    expect(result.events.filter((event) => event.kind === 'backup' && event.event === 'failed')).toEqual([]);
    // The run that was going on when the stop came finished before the scheduler stopped.
    const kinds = result.events.map((event) => `${event.kind} ${event.event}`);
    expect(kinds.at(-1)).toBe('scheduler stopped');
    expect(kinds.lastIndexOf('backup finished')).toBeGreaterThan(kinds.indexOf('scheduler stopping'));
    const dumps = (await readdir(env.LMS_BACKUP_DIR)).filter((name) => name.endsWith('.dump'));
    expect(dumps).toHaveLength(ran.length);
  });

  it('on SIGTERM stops scheduling, lets the running backup finish, then exits 0', async () => {
    const env = envFor('sigterm');
    const child = spawnLmsctl(['schedule', 'run', '--json', '--backup', '* * * * * *', '--drill', YEARLY], {
      env,
      cwd: work,
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    for (let waited = 0; !output.includes('"event":"started","detail":""') && waited < 15_000; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    child.kill('SIGTERM');
    const run = await child;
    expect(run.exitCode, String(run.stderr)).toBe(0);
    const events = output
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as ScheduleEvent);
    const kinds = events.map((event) => `${event.kind} ${event.event}`);
    expect(kinds).toContain('scheduler stopping');
    expect(kinds.indexOf('backup finished')).toBeGreaterThan(kinds.indexOf('scheduler stopping'));
    expect(kinds.at(-1)).toBe('scheduler stopped');
    expect(events.find((event) => event.event === 'stopping')!.detail).toContain('waiting for the running backup');
  });

  it('rejects a bad cron expression with the reason (exit 2)', async () => {
    const run = await runLmsctl(['schedule', 'run', '--backup', '0 25 * * *'], { env: envFor('bad'), cwd: work });
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toContain('--backup "0 25 * * *": hour: 25 is a invalid expression for hour');
  });
});
