import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Queue, Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueNames, redisConnectionOptions } from '@lms/core';
import { createTestDatabase, testRedisPrefix, testRedisUrl, type TestDatabase } from '@lms/core/testing';
import { commandPath, walk } from './cli-docs.js';
import { buildProgram } from './program.js';
import { seedLmsDatabase } from './testing/backup-fixtures.js';
import { FakeArm, fakeAzCli } from './testing/fake-arm.js';
import { fakeDockerCli, fakeEngine, type FakeDocker } from './testing/fake-docker.js';
import { runLmsctl } from './testing/run-cli.js';

/**
 * `--json` on every command (README: "Every command has --json for machine-readable output on
 * stdout"): each runs here as the real binary with --json, and its stdout parses as JSON (one
 * document, or one per line for the commands that stream). Whether it succeeded or not: a
 * failure is a JSON error document too. Every command of the program must be listed below.
 */

interface Here {
  /** A function for arguments known only once the test runs. */
  args: string[] | (() => string[]);
  /** Exit code it ends with here (default 0). */
  exits?: number;
  input?: string;
  /** Streams one JSON document per line. */
  lines?: boolean;
  env?: () => Record<string, string>;
}
/** Covered by another test that runs it with --json, named here, because it runs until stopped or needs more. */
interface Elsewhere {
  elsewhere: string;
}

let database: TestDatabase;
let work: string;
let arm: FakeArm;
let azBin: string;
let composeYaml: FakeDocker;
let composeLogs: FakeDocker;
let engine: Awaited<ReturnType<typeof fakeEngine>>;
let failedJobId: string;
const prefix = testRedisPrefix('jsonout');
const connection = redisConnectionOptions(testRedisUrl);

const COMPOSE_YAML = `name: lms
services:
  api:
    environment:
      DATABASE_URL: postgres://lms:hunter2@db:5432/lms
      PORT: "8000"
    image: lms-api
`;

const azure = () => ['--credential', 'cli', '--arm-endpoint', arm.url];

/** In the order they run: later ones use what earlier ones made (the backup, the failed job). */
const commands: Record<string, Here | Elsewhere> = {
  'migrate up': { args: ['migrate', 'up'] },
  'migrate status': { args: ['migrate', 'status'] },
  'migrate validate': { args: ['migrate', 'validate'] },
  'migrate create': { args: ['migrate', 'create', 'add_tags', '--migrations-dir', 'new-migrations'] },
  'migrate down': { args: ['migrate', 'down', '--steps', '1'], exits: 2 },
  backup: { args: ['backup'] },
  'backup list': { args: ['backup', 'list'] },
  'backup verify': { args: ['backup', 'verify', 'latest'] },
  'backup prune': { args: ['backup', 'prune', '--keep', '5', '--dry-run'] },
  'backup bundle': { args: ['backup', 'bundle', 'latest', '--out', 'lms.tar.gz'] },
  'backup adopt': { args: ['backup', 'adopt', '--all'] },
  'backup decrypt': { elsewhere: 'commands/backup/decrypt.test.ts (needs an encrypted backup and its key)' },
  restore: { args: ['restore', 'latest', '--plan'] },
  'restore cleanup': { args: ['restore', 'cleanup'] },
  drill: { args: ['drill'] },
  'schedule run': { elsewhere: 'commands/schedule.test.ts (JSON lines until stopped)' },
  'schedule install': { args: ['schedule', 'install', '--platform', 'cron'] },
  'queue list': { args: ['queue', 'list'] },
  'queue jobs': { args: ['queue', 'jobs', 'emails', '--state', 'failed'] },
  'queue show': { args: () => ['queue', 'show', 'emails', failedJobId] },
  'queue retry': { args: () => ['queue', 'retry', 'emails', failedJobId] },
  'queue clean': { args: ['queue', 'clean', 'emails', '--state', 'completed', '--older-than', '1d', '--dry-run'] },
  'queue pause': { args: ['queue', 'pause', 'emails'] },
  'queue resume': { args: ['queue', 'resume', 'emails'] },
  'queue drain': { args: ['queue', 'drain', 'emails', '--yes'] },
  'queue watch': { elsewhere: 'commands/queue.test.ts (a JSON line per refresh until Ctrl-C)' },
  status: { args: ['status', '--api-url', 'http://127.0.0.1:1'], exits: 1 },
  check: { args: ['check', 'weekly', '--api-url', 'http://127.0.0.1:1'] },
  'user create': {
    args: ['user', 'create', '--email', 'ops@example.com', '--name', 'Ops', '--role', 'admin', '--password-stdin'],
    input: 'a long enough password 1!',
  },
  'webhooks encrypt-secrets': {
    args: ['webhooks', 'encrypt-secrets'],
    env: () => ({ WEBHOOK_SECRET_KEY: '3c'.repeat(32) }),
  },
  'secrets rotate': { args: ['secrets', 'rotate', '--what', 'jwt', '--step', 'stage'] },
  up: { args: ['up'] },
  down: { args: ['down'] },
  ps: { args: ['ps'] },
  logs: { args: ['logs', '--tail', '10'], lines: true, env: () => ({ PATH: composeLogs.path }) },
  restart: { args: ['restart', 'worker'] },
  config: { args: ['config', '--env', 'prod'] },
  seed: { args: ['seed'] },
  'deploy start': { elsewhere: 'e2e/deploy.e2e.ts (--json on a running production stack)' },
  'deploy rollback': { elsewhere: 'e2e/deploy.e2e.ts (on a running production stack)' },
  'deploy record': {
    args: ['deploy', 'record'],
    input: JSON.stringify({
      id: 'deploy-json-output',
      kind: 'deploy',
      project: 'lms',
      env: 'prod',
      image: 'lms:2',
      imageId: 'sha256:2',
      previousImage: 'lms:1',
      by: 'ci@host',
      startedAt: '2026-12-05T00:00:00.000Z',
      finishedAt: '2026-12-05T00:01:00.000Z',
      migrationsApplied: [],
      outcome: 'succeeded',
      reason: null,
    }),
  },
  'deploy history': { args: ['deploy', 'history'], env: () => ({ LMS_DEPLOY_DIR: path.join(work, 'deploys') }) },
  'db maintain': { args: ['db', 'maintain', '--vacuum', '--analyze', '--reindex-bloated'] },
  'db slow': {
    elsewhere: 'commands/db/slow.test.ts (--json against a private server that preloads pg_stat_statements)',
  },
  'azure servers': { args: () => ['azure', 'servers', ...azure()] },
  'azure backups': { args: () => ['azure', 'backups', '--server', 'prod-pg', ...azure()] },
  'azure pitr': { elsewhere: 'commands/azure-pitr.test.ts (--yes --json against the fake Resource Manager)' },
  'azure pitr-drill': { elsewhere: 'commands/azure-pitr.test.ts (needs a restored server that answers)' },
  'azure replica list': { args: () => ['azure', 'replica', 'list', '--server', 'prod-pg', ...azure()] },
  'azure replica promote': { elsewhere: 'commands/azure.test.ts (the PATCH and its polling)' },
};

beforeAll(async () => {
  database = await createTestDatabase('jsonout');
  await seedLmsDatabase(database.url, { users: 20 });
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-json-'));
  await mkdir(path.join(work, 'new-migrations'));
  arm = await FakeArm.start();
  arm.addServer({ name: 'prod-pg', location: 'westeurope', backupRetentionDays: 7 });
  azBin = await fakeAzCli({ signedIn: true });
  composeYaml = await fakeDockerCli({ plugin: true, stdout: COMPOSE_YAML });
  composeLogs = await fakeDockerCli({
    plugin: true,
    stdout: 'Attaching to api-1\napi-1  | listening on 8000\nworker-1  | connected to redis://:hunter2@redis:6379\n',
  });
  engine = await fakeEngine('lms-dev', [{ id: 'c1', service: 'api', health: ['healthy'] }]);

  // One failed job, for queue show and retry.
  const emails = new Queue('emails', { connection, prefix });
  await emails.add('email.send', { to: 'a@b.c', template: 'welcome', props: {} }, { attempts: 1 });
  const worker = new Worker('emails', null, { connection, prefix, autorun: false });
  const job = await worker.getNextJob('json-token');
  await job.moveToFailed(new Error('SMTP said no'), 'json-token', false);
  failedJobId = job.id!;
  await worker.close(true);
  await emails.close();
});

afterAll(async () => {
  for (const name of queueNames) {
    const queue = new Queue(name, { connection, prefix });
    await queue.obliterate({ force: true });
    await queue.close();
  }
  await database.drop();
  await arm.close();
  await composeYaml.close();
  await composeLogs.close();
  await engine.close();
  await rm(azBin, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
});

describe('--json on every command', () => {
  it('lists every command of the program here', () => {
    const program = buildProgram({ env: {}, cwd: '/' });
    // Leaves, and the parents that run something themselves (`backup`, `restore`).
    const runnable = walk(program)
      .filter((command) => command !== program)
      .filter((command) => command.commands.length === 0 || ['backup', 'restore'].includes(command.name()))
      .map((command) => commandPath(command).replace(/^lmsctl /, ''));
    expect(Object.keys(commands).sort()).toEqual(runnable.sort());
  });

  const runnable = Object.entries(commands).filter((entry): entry is [string, Here] => 'args' in entry[1]);
  it.each(runnable)('%s prints JSON on stdout', async (_name, command) => {
    const args = typeof command.args === 'function' ? command.args() : command.args;
    const run = await runLmsctl([...args, '--json'], {
      cwd: work,
      input: command.input,
      env: {
        PATH: `${azBin}${path.delimiter}${composeYaml.path}`,
        DATABASE_URL: database.url,
        REDIS_URL: testRedisUrl,
        QUEUE_PREFIX: prefix,
        LMS_BACKUP_DIR: path.join(work, 'backups'),
        LMS_DRILL_DIR: path.join(work, 'drills'),
        DOCKER_HOST: engine.dockerHost,
        AZURE_SUBSCRIPTION_ID: arm.subscriptionId,
        AZURE_RESOURCE_GROUP: arm.resourceGroup,
        LMS_AZURE_TEST_CA_FILE: arm.caFile,
        ...command.env?.(),
      },
    });
    expect(run.exitCode, run.stderr).toBe(command.exits ?? 0);
    const documents = command.lines ? run.stdout.split('\n').filter(Boolean) : [run.stdout];
    expect(documents.length, run.stderr).toBeGreaterThan(0);
    for (const document of documents) expect(() => JSON.parse(document) as unknown, document).not.toThrow();
    // Secrets of the environment and of what the commands read never reach --json output.
    expect(run.stdout).not.toContain('hunter2');
  });

  it('--version --json prints {"version": …}', async () => {
    const run = await runLmsctl(['--version', '--json']);
    expect(run.exitCode).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
  });

  it('config --json is the resolved configuration with secrets masked; logs --json a line per log line', async () => {
    const env = { PATH: composeYaml.path, DOCKER_HOST: engine.dockerHost };
    const config = await runLmsctl(['config', '--env', 'prod', '--json'], { cwd: work, env });
    expect(JSON.parse(config.stdout)).toEqual({
      env: 'prod',
      project: 'lms',
      config: {
        name: 'lms',
        services: { api: { environment: { DATABASE_URL: '[redacted]', PORT: '8000' }, image: 'lms-api' } },
      },
    });
    // Without --json, Compose's YAML as it printed it.
    expect((await runLmsctl(['config', '--env', 'prod'], { cwd: work, env })).stdout).toBe(COMPOSE_YAML.trimEnd());

    const logs = await runLmsctl(['logs', '--json'], { cwd: work, env: { ...env, PATH: composeLogs.path } });
    expect(logs.stdout.split('\n').map((line) => JSON.parse(line) as unknown)).toEqual([
      { container: null, line: 'Attaching to api-1' },
      { container: 'api-1', line: 'listening on 8000' },
      { container: 'worker-1', line: 'connected to redis://:***@redis:6379' },
    ]);
    expect(await composeLogs.calls()).toContainEqual([
      'docker',
      'compose',
      '-p',
      'lms-dev',
      '-f',
      expect.stringMatching(/docker-compose\.yml$/),
      'logs',
      '--no-color',
    ]);

    // Compose's own output of up, restart and down goes to stderr: stdout is lmsctl's result alone.
    const up = await runLmsctl(['up', '--json'], { cwd: work, env });
    expect(JSON.parse(up.stdout)).toEqual({ env: 'dev', project: 'lms-dev', built: [], services: [], waitedMs: null });
    expect(up.stderr).toContain('image: lms-api');
  });
});
