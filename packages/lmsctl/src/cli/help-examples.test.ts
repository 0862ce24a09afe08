import { randomBytes } from 'node:crypto';
import { chmod, cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Queue, Worker } from 'bullmq';
import { execa } from 'execa';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultMigrationsDir, redisConnectionOptions } from '@lms/core';
import { createTestDatabase, testRedisPrefix, testRedisUrl, type TestDatabase } from '@lms/core/testing';
import { commandPath, helpOf, walk } from '../cli-docs.js';
import { buildProgram } from '../program.js';
import { seedLmsDatabase } from '../testing/backup-fixtures.js';
import { cliEntry, runLmsctl, tsxLoader } from '../testing/run-cli.js';
import { declaredExamples, type Example } from './help.js';

interface HelpExample {
  /** `lmsctl backup list`: whose --help shows it. */
  command: string;
  /** The line as the help shows it, after `$ `. */
  line: string;
  declarations: Example[];
}

/** Every line of every --help that is an example, in the order of the command tree. */
function examplesInHelp(): HelpExample[] {
  const program = buildProgram({ env: {}, cwd: '/' });
  return walk(program).flatMap((command) => {
    const found: HelpExample[] = [];
    let inExamples = false;
    for (const text of helpOf(command).split('\n')) {
      if (text === 'Examples:') {
        inExamples = true;
        continue;
      }
      if (text.trim() === '') inExamples = false;
      // A `$ ` line anywhere is an example; so is any other line inside the block (a continuation).
      else if (text.startsWith('  $ ') || inExamples) {
        const line = text.startsWith('  $ ') ? text.slice(4) : text;
        found.push({ command: commandPath(command), line, declarations: declaredExamples(line) });
      }
    }
    return found;
  });
}

const inHelp = examplesInHelp();

/** Each runnable command line once (several helps may show it), where it first appears. */
const runnable = [
  ...new Map(
    inHelp.flatMap(({ declarations }) =>
      declarations.length === 1 && 'exits' in declarations[0]! ? [[declarations[0].cmd, declarations[0].exits]] : [],
    ),
  ),
];

describe('the examples of every --help', () => {
  it('are each declared with examples() and classified: the exit code they end with here, or why they cannot run here', () => {
    expect(inHelp.length).toBeGreaterThan(50);
    const undeclared = inHelp.filter((example) => example.declarations.length === 0);
    expect(undeclared.map((example) => `${example.command}: ${example.line}`)).toEqual([]);
    const unexplained = inHelp.filter((example) =>
      example.declarations.some((entry) => 'notRunHere' in entry && entry.notRunHere.trim() === ''),
    );
    expect(unexplained.map((example) => `${example.command}: ${example.line}`)).toEqual([]);
  });

  it('classify a command line the same way wherever it is shown', () => {
    const byCommand = new Map<string, Set<string>>();
    for (const { declarations } of inHelp) {
      for (const entry of declarations) {
        const kind = 'exits' in entry ? `exits ${entry.exits}` : 'not run here';
        byCommand.set(entry.cmd, (byCommand.get(entry.cmd) ?? new Set()).add(kind));
      }
    }
    const conflicting = [...byCommand].filter(([, kinds]) => kinds.size > 1);
    expect(conflicting.map(([cmd, kinds]) => `${cmd}: ${[...kinds].join(' / ')}`)).toEqual([]);
  });
});

// The world the runnable examples assume (see `Example` in help.ts): a migrated database with one
// verified backup in backups/db of the working directory, queues with one failed `emails` job
// 1234, no terminal. Everything here has names of its own and is removed afterwards.
let database: TestDatabase;
let workDir: string;
let binDir: string;
const redisRoot = testRedisPrefix('help-examples');
const connection = redisConnectionOptions(testRedisUrl);
const adminPassword = randomBytes(12).toString('hex');
let redis: Redis;
let runs = 0;

/** `'…'` for sh, whatever the text holds. */
const shellQuote = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`;

beforeAll(async () => {
  redis = new Redis(testRedisUrl);
  database = await createTestDatabase('help_examples');
  workDir = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-examples-'));
  binDir = path.join(workDir, 'bin');
  await mkdir(binDir);
  await mkdir(path.join(workDir, 'home'));
  // `lmsctl` on PATH is the real CLI entry, run the way runLmsctl runs it.
  const lmsctl = path.join(binDir, 'lmsctl');
  await writeFile(
    lmsctl,
    `#!/bin/sh\nexec ${[process.execPath, '--conditions=lms-source', '--import', tsxLoader, cliEntry].map(shellQuote).join(' ')} "$@"\n`,
  );
  await chmod(lmsctl, 0o755);
  await seedLmsDatabase(database.url, { users: 20 });
  const backup = await runLmsctl(['backup'], { env: { DATABASE_URL: database.url }, cwd: workDir });
  expect(backup.exitCode, backup.stderr).toBe(0);
});

afterAll(async () => {
  await database?.drop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
  try {
    for await (const keys of redis.scanStream({ match: `${redisRoot}:*`, count: 500 }) as AsyncIterable<string[]>) {
      if (keys.length > 0) await redis.unlink(...keys);
    }
  } finally {
    redis.disconnect();
  }
});

/** Fresh queues under a prefix of their own, holding one failed `emails` job with the id 1234. */
async function queuesWithFailedJob(prefix: string): Promise<void> {
  const emails = new Queue('emails', { connection, prefix });
  const worker = new Worker('emails', null, { connection, prefix, autorun: false });
  try {
    // BullMQ numbers a queue's jobs from the counter at <prefix>:<queue>:id (custom ids may not be numbers).
    await redis.set(`${prefix}:emails:id`, '1233');
    const added = await emails.add(
      'email.send',
      { to: 'ops@example.com', template: 'welcome', props: {}, idempotencyKey: 'help-examples' },
      { attempts: 1 },
    );
    expect(added.id).toBe('1234');
    const job = await worker.getNextJob('help-examples');
    await job.moveToFailed(new Error('SMTP said no'), 'help-examples', false);
  } finally {
    await worker.close(true);
    await emails.close();
  }
}

/**
 * Runs an example as a user would type it. bash with pipefail rather than sh, so an lmsctl that
 * fails in front of `| jq` fails the example. Each gets its own queues and its own copy of the
 * migrations (`migrate create` writes one); the database and the backups are shared, in order.
 */
async function runExample(cmd: string) {
  runs += 1;
  const prefix = `${redisRoot}:${runs}`;
  const migrations = path.join(workDir, `migrations-${runs}`);
  await queuesWithFailedJob(prefix);
  await cp(defaultMigrationsDir, migrations, { recursive: true });
  return execa('bash', ['-o', 'pipefail', '-c', cmd], {
    reject: false,
    extendEnv: false,
    env: {
      PATH: `${binDir}${path.delimiter}${process.env.PATH}`,
      HOME: path.join(workDir, 'home'),
      NO_COLOR: '1',
      DATABASE_URL: database.url,
      REDIS_URL: testRedisUrl,
      QUEUE_PREFIX: prefix,
      LMS_MIGRATIONS_DIR: migrations,
      ADMIN_PASSWORD: adminPassword,
    },
    cwd: workDir,
    stdin: 'ignore',
    // A misclassified example that waits forever fails instead of hanging the run.
    timeout: 50_000,
  });
}

describe.sequential('every runnable example, run as shown', () => {
  it.each(runnable)('%s exits %i', { timeout: 60_000 }, async (cmd, exits) => {
    const run = await runExample(cmd);
    expect(run.timedOut, 'did not finish').toBe(false);
    expect(run.exitCode, `stdout:\n${String(run.stdout)}\nstderr:\n${String(run.stderr)}`).toBe(exits);
  });
});
