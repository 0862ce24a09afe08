import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connectClient, defaultMigrationsDir, formatVersion, readMigrationFiles } from '@lms/core';
import { createTestDatabase, type TestDatabase } from '@lms/core/testing';
import { CliError } from '../../errors.js';
import type { AzureTestSeam } from '../../azure/client.js';
import { seedLmsDatabase } from '../../testing/backup-fixtures.js';
import { armError, FakeArm, fakeAzCli, fakeCredential } from '../../testing/fake-arm.js';
import { testContext } from '../../testing/context.js';
import { runLmsctl } from '../../testing/run-cli.js';
import { azurePitrDrill, pitrDrillExitError, renderPitrDrill } from './pitr-drill.js';
import { azurePitr, renderPitr } from './pitr.js';

let fake: FakeArm;
const HOUR = 3_600_000;

beforeEach(async () => {
  fake = await FakeArm.start();
  fake.addServer({ name: 'prod-pg', location: 'westeurope', backupRetentionDays: 7 });
});

afterEach(async () => {
  await fake.close();
});

function setup(options: { yes?: boolean; env?: Record<string, string> } = {}) {
  const test = testContext({
    cwd: os.tmpdir(),
    yes: options.yes,
    env: {
      AZURE_SUBSCRIPTION_ID: fake.subscriptionId,
      AZURE_RESOURCE_GROUP: fake.resourceGroup,
      AZURE_ARM_ENDPOINT: fake.url,
      ...options.env,
    },
  });
  const testing: AzureTestSeam = { credential: fakeCredential, ca: fake.ca, pollIntervalMs: 1, retryDelayMs: 10 };
  return { ...test, testing };
}

async function cliError(promise: Promise<unknown>): Promise<CliError> {
  const error = await promise.then(
    () => null,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(CliError);
  return error as CliError;
}

const serverPath = (name: string) =>
  `/resourceGroups/rg-lms/providers/Microsoft.DBforPostgreSQL/flexibleServers/${name}`;
const hoursAgo = (hours: number) => new Date(Math.floor((Date.now() - hours * HOUR) / 1000) * 1000);

describe('lmsctl azure pitr', () => {
  it('validates, sends the exact PointInTimeRestore body, polls to the end and prints host, time and DATABASE_URL', async () => {
    fake.pollsBeforeDone = 3;
    const restoreTime = hoursAgo(2);
    const { ctx, testing } = setup({
      yes: true,
      env: { DATABASE_URL: 'postgres://lms:s3cret@prod-pg.postgres.database.azure.com:5432/lms?sslmode=require' },
    });
    const result = await azurePitr(ctx, { testing, server: 'prod-pg', restoreTime, targetServer: 'prod-pg-0930' });

    expect(fake.calls()).toEqual([
      `GET ${serverPath('prod-pg')}`,
      `GET ${serverPath('prod-pg-0930')}`,
      'POST /providers/Microsoft.DBforPostgreSQL/checkNameAvailability',
      `PUT ${serverPath('prod-pg-0930')}`,
      `GET ${serverPath('prod-pg-0930')}`,
    ]);
    const put = fake.mutations();
    expect(put).toHaveLength(1);
    expect(put[0]!.body).toEqual({
      location: 'westeurope',
      properties: {
        createMode: 'PointInTimeRestore',
        pointInTimeUTC: restoreTime.toISOString(),
        sourceServerResourceId: fake.resourceId('prod-pg'),
      },
    });
    expect(fake.requests.find((request) => request.method === 'POST')!.body).toEqual({
      name: 'prod-pg-0930',
      type: 'Microsoft.DBforPostgreSQL/flexibleServers',
    });
    // 3 × InProgress, then Succeeded.
    expect(fake.polls()).toHaveLength(4);

    expect(result).toMatchObject({
      status: 'ready',
      source: { name: 'prod-pg', resourceId: fake.resourceId('prod-pg') },
      restoreTime: restoreTime.toISOString(),
      target: {
        name: 'prod-pg-0930',
        location: 'westeurope',
        fqdn: 'prod-pg-0930.postgres.database.azure.com',
        state: 'Ready',
      },
      databaseUrl: 'postgres://lms:***@prod-pg-0930.postgres.database.azure.com:5432/lms?sslmode=require',
    });
    expect(result.elapsedMs).toBeGreaterThanOrEqual(0);
    expect(new Date(result.readyAt!).getTime() - new Date(result.startedAt).getTime()).toBe(result.elapsedMs);
    expect(JSON.stringify(result)).not.toContain('s3cret');
    const text = renderPitr(result, ctx.out.style);
    expect(text).toContain('server   prod-pg-0930.postgres.database.azure.com (Ready)');
    expect(text).toContain(
      'DATABASE_URL=postgres://lms:***@prod-pg-0930.postgres.database.azure.com:5432/lms?sslmode=require',
    );
  });

  it('restores into another region with --location', async () => {
    const restoreTime = hoursAgo(1);
    const { ctx, testing } = setup({ yes: true });
    await azurePitr(ctx, {
      testing,
      server: 'prod-pg',
      restoreTime,
      targetServer: 'prod-pg-ne',
      location: 'northeurope',
    });
    expect(fake.mutations()[0]!.body).toEqual({
      location: 'northeurope',
      properties: {
        createMode: 'PointInTimeRestore',
        pointInTimeUTC: restoreTime.toISOString(),
        sourceServerResourceId: fake.resourceId('prod-pg'),
      },
    });
  });

  it('returns the operation to poll with --no-wait', async () => {
    fake.pollsBeforeDone = 5;
    const { ctx, testing } = setup({ yes: true });
    const result = await azurePitr(ctx, {
      testing,
      server: 'prod-pg',
      restoreTime: hoursAgo(1),
      targetServer: 'prod-pg-later',
      wait: false,
    });
    expect(result.status).toBe('started');
    expect(result.operationUrl).toMatch(
      new RegExp(
        `^${fake.url}/subscriptions/${fake.subscriptionId}/providers/Microsoft.DBforPostgreSQL/locations/westeurope/azureAsyncOperation/op-1`,
      ),
    );
    expect(result.elapsedMs).toBeNull();
    // One poll as the SDK starts the operation, and no waiting for the end.
    expect(fake.polls()).toHaveLength(1);
    expect(renderPitr(result, ctx.out.style)).toContain(`operation: ${result.operationUrl}`);
  });

  it('refuses bad input before any request: future time, invalid or same target name, missing subscription', async () => {
    const cases: Array<[Parameters<typeof azurePitr>[1], Record<string, string>, string]> = [
      [
        { server: 'prod-pg', restoreTime: new Date(Date.now() + HOUR), targetServer: 'prod-pg-new' },
        {},
        'is in the future',
      ],
      [
        { server: 'prod-pg', restoreTime: hoursAgo(1), targetServer: 'Prod_PG' },
        {},
        'target server name "Prod_PG" is invalid: it may contain only lowercase letters, digits and hyphens',
      ],
      [{ server: 'prod-pg', restoreTime: hoursAgo(1), targetServer: 'pg' }, {}, 'it must be 3 to 63 characters long'],
      [
        { server: 'prod-pg', restoreTime: hoursAgo(1), targetServer: 'new-pg-' },
        {},
        'cannot start or end with a hyphen',
      ],
      [
        { server: 'prod-pg', restoreTime: hoursAgo(1), targetServer: 'prod-pg' },
        {},
        'the target server must be a new server',
      ],
      [
        { server: 'prod-pg', restoreTime: hoursAgo(1), targetServer: 'prod-pg-new' },
        { AZURE_SUBSCRIPTION_ID: '' },
        'no Azure subscription given',
      ],
      [
        { server: 'prod-pg', restoreTime: hoursAgo(1), targetServer: 'prod-pg-new' },
        { AZURE_RESOURCE_GROUP: '' },
        'no resource group given',
      ],
    ];
    for (const [options, env, message] of cases) {
      const { ctx, testing } = setup({ yes: true, env });
      const error = await cliError(azurePitr(ctx, { ...options, testing }));
      expect(error.exitCode).toBe(2);
      expect(error.message).toContain(message);
      expect(error.message).not.toContain('\n');
      expect(error.hint).toBeTruthy();
    }
    expect(fake.requests).toEqual([]);
  });

  it('refuses a time before the earliest restore point, and a taken name, without changing anything', async () => {
    const { ctx, testing } = setup({ yes: true });
    const tooOld = await cliError(
      azurePitr(ctx, { testing, server: 'prod-pg', restoreTime: hoursAgo(8 * 24), targetServer: 'prod-pg-old' }),
    );
    expect(tooOld.exitCode).toBe(2);
    expect(tooOld.message).toMatch(
      /^restore time \S+ is before the earliest restore point of prod-pg, \S+ \(backups are kept 7 days\)$/,
    );
    expect(tooOld.hint).toContain('lmsctl azure backups --server prod-pg');

    // A server only 3 hours old cannot be restored to 4 hours ago, whatever the retention.
    fake.addServer({ name: 'young-pg', createdAt: hoursAgo(3).toISOString(), backupRetentionDays: 35 });
    const beforeCreation = await cliError(
      azurePitr(ctx, { testing, server: 'young-pg', restoreTime: hoursAgo(4), targetServer: 'young-pg-old' }),
    );
    expect(beforeCreation.message).toContain('is before the earliest restore point of young-pg');

    fake.addServer({ name: 'prod-pg-copy' });
    const inGroup = await cliError(
      azurePitr(ctx, { testing, server: 'prod-pg', restoreTime: hoursAgo(1), targetServer: 'prod-pg-copy' }),
    );
    expect(inGroup.exitCode).toBe(2);
    expect(inGroup.message).toBe('server prod-pg-copy already exists in resource group rg-lms');

    fake.respond('POST', /checkNameAvailability$/, {
      status: 200,
      body: { nameAvailable: false, reason: 'AlreadyExists', message: 'Specified server name is already used.' },
    });
    const elsewhere = await cliError(
      azurePitr(ctx, { testing, server: 'prod-pg', restoreTime: hoursAgo(1), targetServer: 'taken-elsewhere' }),
    );
    expect(elsewhere.exitCode).toBe(2);
    expect(elsewhere.message).toBe(
      'server name taken-elsewhere is not available: Specified server name is already used.',
    );
    expect(fake.mutations()).toEqual([]);
  });

  it('refuses without confirmation (no terminal, no --yes), naming source, time and new server; no create', async () => {
    const restoreTime = hoursAgo(1);
    const harness = setup();
    const { ctx, testing } = harness;
    const error = await cliError(
      azurePitr(ctx, { testing, server: 'prod-pg', restoreTime, targetServer: 'prod-pg-0930' }),
    );
    expect(error.exitCode).toBe(2);
    expect(error.message).toBe(
      `refusing to restore prod-pg to ${restoreTime.toISOString()} into new server prod-pg-0930 without confirmation: no terminal to ask on`,
    );
    expect(harness.stderr()).toContain('this creates a new server prod-pg-0930 in westeurope (resource group rg-lms)');
    expect(fake.mutations()).toEqual([]);
  });

  it('maps 404 (source), 403 and 409 (create) and a failed operation to one line each, exit 1', async () => {
    const { ctx, testing } = setup({ yes: true });
    const base = { testing, server: 'prod-pg', restoreTime: hoursAgo(1) };

    const missing = await cliError(azurePitr(ctx, { ...base, server: 'nope', targetServer: 'nope-restored' }));
    expect([missing.exitCode, missing.message]).toEqual([1, 'server nope not found in resource group rg-lms']);

    fake.respond(
      'PUT',
      /flexibleServers\/denied-pg$/,
      armError(403, 'AuthorizationFailed', "The client does not have authorization to perform action 'write'."),
    );
    const denied = await cliError(azurePitr(ctx, { ...base, targetServer: 'denied-pg' }));
    expect([denied.exitCode, denied.message]).toEqual([
      1,
      'no permission to create server denied-pg in resource group rg-lms (403 AuthorizationFailed)',
    ]);

    fake.respond(
      'PUT',
      /flexibleServers\/raced-pg$/,
      armError(409, 'ServerNameAlreadyExists', "Server name 'raced-pg' already exists."),
    );
    const raced = await cliError(azurePitr(ctx, { ...base, targetServer: 'raced-pg' }));
    expect([raced.exitCode, raced.message]).toEqual([
      1,
      "cannot create server raced-pg: it already exists or is being created (Server name 'raced-pg' already exists.)",
    ]);
    expect(raced.hint).toBe('choose another --target-server');

    fake.failNextOperation({
      code: 'PointInTimeRestoreFailed',
      message: 'The point in time is not within the available backup range.',
    });
    const failed = await cliError(azurePitr(ctx, { ...base, targetServer: 'failed-pg' }));
    expect([failed.exitCode, failed.message]).toEqual([
      1,
      'Azure operation failed: The point in time is not within the available backup range. (PointInTimeRestoreFailed)',
    ]);
  });
});

describe('lmsctl azure pitr-drill', () => {
  let database: TestDatabase;

  beforeAll(async () => {
    database = await createTestDatabase('pitr_drill');
    await seedLmsDatabase(database.url, { users: 20 });
  });

  afterAll(async () => {
    await database.drop();
  });

  /** The fake's restored servers answer on the local PostgreSQL, so the template connects to it. */
  const template = (db: TestDatabase) => `postgres://root@{host}:5432/${db.name}`;

  it('restores to a temporary server, records the recovery time, runs the checks on it and deletes it', async () => {
    fake.fqdnFor = () => '127.0.0.1';
    fake.pollsBeforeDone = 2;
    const { ctx, testing } = setup();
    const report = await azurePitrDrill(ctx, {
      testing,
      server: 'prod-pg',
      targetServer: 'prod-pg-drill',
      databaseUrlTemplate: template(database),
    });
    expect(report.verdict).toBe('pass');
    expect(pitrDrillExitError(report)).toBeNull();
    expect(report.recovery!.recoveryMs).toBeGreaterThanOrEqual(0);
    expect(report.checks.find((check) => check.kind === 'rto')).toMatchObject({ ok: true, expected: '≤ 4h' });
    const newest = formatVersion(
      Math.max(...(await readMigrationFiles(defaultMigrationsDir)).map((file) => file.version)),
    );
    expect(report.checks.find((check) => check.kind === 'migration')).toMatchObject({
      expected: newest,
      found: newest,
      ok: true,
    });
    expect(report.checks.filter((check) => check.kind === 'foreign-key').length).toBeGreaterThanOrEqual(20);
    expect(report.checks.filter((check) => check.kind === 'query').map((check) => [check.name, check.ok])).toEqual([
      ['published courses', true],
      ['enrollments per course', true],
      ['users per role', true],
      ['certificates of completed enrolments', true],
    ]);
    expect(report.database).toBe(`postgres://root@127.0.0.1:5432/${database.name}`);
    expect(report.checksSkipped).toBeNull();
    // The body of a restore, then the server deleted and polled until gone.
    expect(fake.mutations().map((request) => request.method)).toEqual(['PUT', 'DELETE']);
    expect(fake.mutations()[0]!.body).toMatchObject({ properties: { createMode: 'PointInTimeRestore' } });
    expect(fake.calls().at(-1)).toBe(`DELETE ${serverPath('prod-pg-drill')}`);
    expect(fake.hasServer('prod-pg-drill')).toBe(false);
    expect(report.target.deleted).toBe(true);
    expect(renderPitrDrill(report, ctx.out.style)).toMatch(
      /^pitr-drill PASS: prod-pg as of \S+ → prod-pg-drill \(deleted\)/,
    );
  });

  it('fails (exit 3) on an orphaned row behind an unvalidated foreign key, and still deletes the server', async () => {
    const orphaned = await createTestDatabase('pitr_drill_orphans');
    try {
      await seedLmsDatabase(orphaned.url, { users: 10 });
      const client = await connectClient(orphaned.url);
      await client.query(`ALTER TABLE enrollments DROP CONSTRAINT enrollments_course_id_fkey`);
      await client.query(`DELETE FROM courses WHERE id = (SELECT course_id FROM enrollments LIMIT 1)`);
      await client.query(
        `ALTER TABLE enrollments ADD CONSTRAINT enrollments_course_id_fkey FOREIGN KEY (course_id) REFERENCES courses (id) NOT VALID`,
      );
      await client.end();
      fake.fqdnFor = () => '127.0.0.1';
      const { ctx, testing } = setup();
      const report = await azurePitrDrill(ctx, {
        testing,
        server: 'prod-pg',
        targetServer: 'prod-pg-drill',
        databaseUrlTemplate: template(orphaned),
      });
      expect(report.verdict).toBe('fail');
      const check = report.checks.find((entry) => entry.name.startsWith('enrollments_course_id_fkey'));
      expect(check).toMatchObject({ expected: 0, ok: false });
      const failure = pitrDrillExitError(report);
      expect(failure?.exitCode).toBe(3);
      expect(failure?.message).toMatch(/^pitr-drill failed: enrollments_course_id_fkey .* expected 0, found [1-9]/);
      expect(fake.calls().at(-1)).toBe(`DELETE ${serverPath('prod-pg-drill')}`);
      expect(report.target.deleted).toBe(true);
    } finally {
      await orphaned.drop();
    }
  });

  it('says clearly that the checks were skipped without a template, and deletes the server', async () => {
    const { ctx, testing } = setup();
    const report = await azurePitrDrill(ctx, { testing, server: 'prod-pg', targetServer: 'prod-pg-drill' });
    expect(report.verdict).toBe('pass');
    expect(report.checksSkipped).toBe(
      'no --database-url-template, so no connection to the restored server was possible: the drill checks were skipped',
    );
    expect(report.checks.map((check) => check.kind)).toEqual(['rto']);
    expect(renderPitrDrill(report, ctx.out.style)).toContain('checks skipped: no --database-url-template');
    expect(fake.mutations().map((request) => request.method)).toEqual(['PUT', 'DELETE']);
  });

  it('deletes the server when the restore operation fails or no connection is possible (exit 1)', async () => {
    fake.failNextOperation({ code: 'InternalServerError', message: 'An unexpected error occurred.' });
    const { ctx, testing } = setup();
    const failed = await azurePitrDrill(ctx, { testing, server: 'prod-pg', targetServer: 'prod-pg-drill' });
    expect(failed.verdict).toBe('error');
    expect(failed.error).toBe('Azure operation failed: An unexpected error occurred. (InternalServerError)');
    expect(failed.recovery).toBeNull();
    expect(pitrDrillExitError(failed)?.exitCode).toBe(1);
    expect(fake.mutations().map((request) => request.method)).toEqual(['PUT', 'DELETE']);

    fake.fqdnFor = () => '127.0.0.1';
    const unreachable = await azurePitrDrill(ctx, {
      testing,
      server: 'prod-pg',
      targetServer: 'prod-pg-drill2',
      databaseUrlTemplate: 'postgres://root@{host}:1/lms',
    });
    expect(unreachable.verdict).toBe('error');
    expect(unreachable.error).toContain('cannot connect to PostgreSQL at 127.0.0.1:1');
    expect(fake.calls().at(-1)).toBe(`DELETE ${serverPath('prod-pg-drill2')}`);
    expect(unreachable.target.deleted).toBe(true);
  });

  it('never deletes a server it did not create (409 on the create)', async () => {
    fake.respond('PUT', /prod-pg-drill$/, armError(409, 'ServerNameAlreadyExists', 'Server name already exists.'));
    const { ctx, testing } = setup();
    const report = await azurePitrDrill(ctx, { testing, server: 'prod-pg', targetServer: 'prod-pg-drill' });
    expect(report.verdict).toBe('error');
    expect(report.error).toContain('cannot create server prod-pg-drill: it already exists');
    expect(fake.mutations().map((request) => request.method)).toEqual(['PUT']);
    expect(report.target.deleted).toBe(false);
  });

  it('refuses a template without {host} before any request', async () => {
    const { ctx, testing } = setup();
    const error = await cliError(
      azurePitrDrill(ctx, {
        testing,
        server: 'prod-pg',
        targetServer: 'prod-pg-drill',
        databaseUrlTemplate: 'postgres://root@127.0.0.1:5432/lms',
      }),
    );
    expect(error.exitCode).toBe(2);
    expect(error.message).toBe("the database URL template must contain {host} for the new server's name");
    expect(fake.requests).toEqual([]);
  });
});

describe('lmsctl azure (the real binary)', () => {
  let bin: string;
  let signedOut: string;

  beforeAll(async () => {
    bin = await fakeAzCli({ signedIn: true, token: 'token-from-az' });
    signedOut = await fakeAzCli({ signedIn: false });
  });

  afterAll(async () => {
    await rm(bin, { recursive: true, force: true });
    await rm(signedOut, { recursive: true, force: true });
  });

  function env(azDir: string) {
    return {
      PATH: `${azDir}${path.delimiter}${process.env.PATH ?? ''}`,
      AZURE_SUBSCRIPTION_ID: fake.subscriptionId,
      AZURE_RESOURCE_GROUP: fake.resourceGroup,
      LMS_AZURE_TEST_CA_FILE: fake.caFile,
      DATABASE_URL: 'postgres://lms:s3cret@old-host:5432/lms',
    };
  }

  it('restores with --yes --json, signed in through `az`, and prints the result as JSON', async () => {
    const restoreTime = hoursAgo(1).toISOString();
    const cwd = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-azure-'));
    try {
      const run = await runLmsctl(
        [
          'azure',
          'pitr',
          '--server',
          'prod-pg',
          '--restore-time',
          restoreTime,
          '--target-server',
          'prod-pg-e2e',
          '--credential',
          'cli',
          '--arm-endpoint',
          fake.url,
          '--yes',
          '--json',
        ],
        { env: env(bin), cwd },
      );
      expect(run.exitCode, run.stderr).toBe(0);
      const result = JSON.parse(run.stdout) as { status: string; target: { fqdn: string }; databaseUrl: string };
      expect(result.status).toBe('ready');
      expect(result.target.fqdn).toBe('prod-pg-e2e.postgres.database.azure.com');
      expect(result.databaseUrl).toBe(
        'postgres://lms:***@prod-pg-e2e.postgres.database.azure.com:5432/lms?sslmode=require',
      );
      expect(run.stdout + run.stderr).not.toContain('s3cret');
      expect(fake.mutations()[0]!.body).toEqual({
        location: 'westeurope',
        properties: {
          createMode: 'PointInTimeRestore',
          pointInTimeUTC: restoreTime,
          sourceServerResourceId: fake.resourceId('prod-pg'),
        },
      });
      expect(new Set(fake.requests.map((request) => request.authorization))).toEqual(new Set(['Bearer token-from-az']));
      // The token was asked for the endpoint's own scope.
      expect(await readFile(path.join(bin, 'az.log'), 'utf8')).toContain(
        `account get-access-token --output json --resource ${fake.url}`,
      );
    } finally {
      await rm(cwd, { recursive: true, force: true });
    }
  });

  it('exits 2 on a future time and on a refused confirmation, sending nothing that changes Azure', async () => {
    const future = await runLmsctl(
      [
        'azure',
        'pitr',
        '--server',
        'prod-pg',
        '--restore-time',
        '2099-01-01T00:00:00Z',
        '--target-server',
        'x-pg',
        '--credential',
        'cli',
        '--arm-endpoint',
        fake.url,
      ],
      { env: env(bin) },
    );
    expect(future.exitCode).toBe(2);
    expect(future.stderr).toMatch(/^error: restore time 2099-01-01T00:00:00.000Z is in the future \(it is now .*\)\n/);
    expect(fake.requests).toEqual([]);

    const restoreTime = hoursAgo(1).toISOString();
    const refused = await runLmsctl(
      [
        'azure',
        'pitr',
        '--server',
        'prod-pg',
        '--restore-time',
        restoreTime,
        '--target-server',
        'x-pg',
        '--credential',
        'cli',
        '--arm-endpoint',
        fake.url,
      ],
      { env: env(bin) },
    );
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain(
      `error: refusing to restore prod-pg to ${restoreTime} into new server x-pg without confirmation: no terminal to ask on\npass --yes to confirm non-interactively`,
    );
    expect(fake.mutations()).toEqual([]);
  });

  it('tells the user to run `az login` when the Azure CLI is not signed in (exit 1)', async () => {
    const run = await runLmsctl(['azure', 'servers', '--credential', 'cli', '--arm-endpoint', fake.url], {
      env: env(signedOut),
    });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toMatch(/^error: not signed in to Azure \(--credential cli\): run `az login`/);
    expect(run.stderr.split('\n').filter(Boolean)).toHaveLength(2);
    expect(fake.requests).toEqual([]);
  });

  it('says which variables to set when --credential environment has none', async () => {
    const run = await runLmsctl(['azure', 'servers', '--credential', 'environment', '--arm-endpoint', fake.url], {
      env: env(bin),
    });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain(
      'error: not signed in to Azure (--credential environment): run `az login` (and `az account set --subscription …`), or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET',
    );
    expect(fake.requests).toEqual([]);
  });
});
