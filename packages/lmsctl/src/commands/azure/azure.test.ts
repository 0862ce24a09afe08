import os from 'node:os';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CliError } from '../../errors.js';
import type { AzureTestSeam } from '../../azure/client.js';
import { armError, FakeArm, fakeCredential } from '../../testing/fake-arm.js';
import { testContext } from '../../testing/context.js';
import { azureBackups, renderAzureBackups } from './backups.js';
import { azureReplicaList, azureReplicaPromote, renderReplicaPromote } from './replica.js';
import { azureServers, renderAzureServers } from './servers.js';

let fake: FakeArm;

beforeEach(async () => {
  fake = await FakeArm.start();
  fake.addServer({
    name: 'prod-pg',
    location: 'westeurope',
    highAvailability: { mode: 'ZoneRedundant', state: 'Healthy' },
    backups: [
      { name: 'backup_20261127', backupType: 'Full', completedTime: '2026-11-27T02:00:00Z' },
      { name: 'backup_20261128', backupType: 'Full', completedTime: '2026-11-28T02:00:00Z' },
      { name: 'before-upgrade', backupType: 'Customer On-Demand', completedTime: '2026-11-27T18:00:00Z' },
    ],
  });
  fake.addServer({
    name: 'prod-pg-ne',
    location: 'northeurope',
    primary: 'prod-pg',
    replicationRole: 'GeoAsyncReplica',
    replicationState: 'Active',
  });
});

afterEach(async () => {
  await fake.close();
});

function setup(
  options: { yes?: boolean; env?: Record<string, string>; credential?: AzureTestSeam['credential'] } = {},
) {
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
  const testing: AzureTestSeam = {
    credential: options.credential ?? fakeCredential,
    ca: fake.ca,
    pollIntervalMs: 1,
    retryDelayMs: 10,
  };
  return { ...test, testing };
}

/** The CliError a promise rejects with. */
async function cliError(promise: Promise<unknown>): Promise<CliError> {
  const error = await promise.then(
    () => null,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(CliError);
  return error as CliError;
}

const serverPath = (name = '') =>
  `/resourceGroups/rg-lms/providers/Microsoft.DBforPostgreSQL/flexibleServers${name ? `/${name}` : ''}`;

describe('lmsctl azure servers', () => {
  it('lists the servers of the resource group with state, version, location, HA and replica role', async () => {
    const { ctx, testing } = setup();
    const result = await azureServers(ctx, { testing });
    expect(result.servers.map((server) => server.name)).toEqual(['prod-pg', 'prod-pg-ne']);
    expect(result.servers[0]).toMatchObject({
      state: 'Ready',
      version: '16',
      location: 'westeurope',
      highAvailability: 'ZoneRedundant (Healthy)',
      replicationRole: 'Primary',
      primary: null,
      fqdn: 'prod-pg.postgres.database.azure.com',
    });
    expect(result.servers[1]).toMatchObject({
      replicationRole: 'GeoAsyncReplica',
      primary: 'prod-pg',
      replicationState: 'Active',
    });
    const text = renderAzureServers(result, ctx.out.style);
    expect(text).toMatch(/^NAME +STATE +VERSION +LOCATION +HA +ROLE +FQDN/);
    expect(text).toContain('GeoAsyncReplica of prod-pg');

    // The real SDK sent it: the 2025-08-01 API, with the credential's token.
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]).toMatchObject({
      method: 'GET',
      path: `/subscriptions/${fake.subscriptionId}${serverPath()}`,
      query: { 'api-version': '2025-08-01' },
      authorization: 'Bearer fake-token',
    });
  });

  it('refuses without a subscription or resource group, or with malformed ones, before any request', async () => {
    const cases: Array<[Record<string, string>, Record<string, string>, RegExp]> = [
      [{ AZURE_SUBSCRIPTION_ID: '' }, {}, /^no Azure subscription given$/],
      [{ AZURE_RESOURCE_GROUP: '' }, {}, /^no resource group given$/],
      [{}, { subscription: 'not-a-uuid' }, /is not a subscription id/],
      [{}, { resourceGroup: 'rg/lms' }, /is not a valid resource group name/],
    ];
    for (const [env, flags, message] of cases) {
      // An empty variable counts as unset, as everywhere in the configuration.
      const { ctx, testing } = setup({ env });
      const error = await cliError(azureServers(ctx, { ...flags, testing }));
      expect(error.exitCode).toBe(2);
      expect(error.message).toMatch(message);
    }
    expect(fake.requests).toEqual([]);
  });

  it('retries a throttled request (429 with Retry-After) after the time asked for, then succeeds', async () => {
    fake.respond(
      'GET',
      /flexibleServers$/,
      armError(429, 'TooManyRequests', 'Too many requests', { 'Retry-After': '1' }),
    );
    const { ctx, testing } = setup();
    const result = await azureServers(ctx, { testing });
    expect(result.servers).toHaveLength(2);
    expect(fake.requests).toHaveLength(2);
    expect(fake.requests[1]!.at - fake.requests[0]!.at).toBeGreaterThanOrEqual(900);
  });

  it('says so in one line when the throttling does not stop', async () => {
    const throttled = armError(429, 'TooManyRequests', 'Too many requests', { 'Retry-After': '0' });
    fake.respond('GET', /flexibleServers$/, ...Array.from({ length: 10 }, () => throttled));
    const { ctx, testing } = setup();
    const error = await cliError(azureServers(ctx, { testing }));
    expect(error.exitCode).toBe(1);
    expect(error.message).toBe('Azure Resource Manager is throttling requests (429) and the retries ran out');
    expect(error.hint).toBe('wait 0 s and run the command again');
    expect(fake.requests).toHaveLength(5);
  });

  it('maps 403 to "no permission", naming the resource', async () => {
    fake.respond(
      'GET',
      /flexibleServers$/,
      armError(
        403,
        'AuthorizationFailed',
        "The client 'ops@example.com' does not have authorization to perform action 'Microsoft.DBforPostgreSQL/flexibleServers/read'",
      ),
    );
    const { ctx, testing } = setup();
    const error = await cliError(azureServers(ctx, { testing }));
    expect(error.exitCode).toBe(1);
    expect(error.message).toBe('no permission to read resource group rg-lms (403 AuthorizationFailed)');
    expect(error.hint).toContain('Contributor on resource group rg-lms');
  });

  it('names a resource group that does not exist', async () => {
    const { ctx, testing } = setup({ env: { AZURE_RESOURCE_GROUP: 'rg-missing' } });
    const error = await cliError(azureServers(ctx, { testing }));
    expect(error.message).toBe(`resource group rg-missing not found in subscription ${fake.subscriptionId}`);
  });

  it('tells the user to sign in when no credential is available, or Resource Manager rejects it (401)', async () => {
    const unavailable = Object.assign(new Error("Please run 'az login' from a command prompt to authenticate."), {
      name: 'CredentialUnavailableError',
    });
    const { ctx, testing } = setup({ credential: { getToken: () => Promise.reject(unavailable) } });
    const error = await cliError(azureServers(ctx, { testing, credential: 'cli' }));
    expect(error.exitCode).toBe(1);
    expect(error.message).toBe(
      'not signed in to Azure (--credential cli): run `az login` (and `az account set --subscription …`), or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a service principal',
    );
    expect(error.message).not.toContain('\n');
    expect(fake.requests).toEqual([]);

    fake.respond(
      'GET',
      /flexibleServers$/,
      armError(401, 'InvalidAuthenticationToken', 'The access token is invalid.'),
    );
    const rejected = await cliError(azureServers(setup().ctx, { testing: setup().testing }));
    expect(rejected.message).toMatch(/^Azure Resource Manager rejected the credential \(401\): run `az login`/);
    expect(rejected.hint).toBe('The access token is invalid.');
  });

  it('reports an unreachable Resource Manager in one line', async () => {
    const { ctx, testing } = setup();
    const closed = fake.url;
    await fake.close();
    const error = await cliError(azureServers(ctx, { testing }));
    expect(error.message).toMatch(new RegExp(`^cannot reach Azure Resource Manager at ${closed}: `));
    fake = await FakeArm.start();
  });
});

describe('lmsctl azure backups', () => {
  it('lists backups newest first and the restore window from retention and creation time', async () => {
    const { ctx, testing } = setup();
    const before = Date.now();
    const result = await azureBackups(ctx, 'prod-pg', { testing });
    expect(result.backups.map((backup) => backup.name)).toEqual([
      'backup_20261128',
      'before-upgrade',
      'backup_20261127',
    ]);
    expect(result.backups[1]).toEqual({
      name: 'before-upgrade',
      type: 'Customer On-Demand',
      completedAt: '2026-11-27T18:00:00.000Z',
      source: null,
    });
    expect(result.retentionDays).toBe(7);
    // An old server: the window reaches back the 7 days of retention.
    const earliest = new Date(result.earliestRestorePoint).getTime();
    expect(earliest).toBeGreaterThanOrEqual(before - 7 * 86_400_000);
    expect(earliest).toBeLessThanOrEqual(Date.now() - 7 * 86_400_000);
    expect(new Date(result.latestRestorePoint).getTime()).toBeGreaterThanOrEqual(before);
    expect(renderAzureBackups(result, ctx.out.style)).toContain(
      `restore window: ${result.earliestRestorePoint} → ${result.latestRestorePoint} (now)`,
    );

    // A server two days old: nothing before its creation can be restored.
    const createdAt = new Date(Date.now() - 2 * 86_400_000).toISOString();
    fake.addServer({ name: 'young-pg', createdAt, backupRetentionDays: 35 });
    const young = await azureBackups(ctx, 'young-pg', { testing });
    expect(young.earliestRestorePoint).toBe(createdAt);
    expect(young.retentionDays).toBe(35);
  });

  it('maps 404 to "server not found", naming it', async () => {
    const { ctx, testing } = setup();
    const error = await cliError(azureBackups(ctx, 'nope', { testing }));
    expect(error.exitCode).toBe(1);
    expect(error.message).toBe('server nope not found in resource group rg-lms');
    expect(error.hint).toContain('lmsctl azure servers');
  });
});

describe('lmsctl azure replica', () => {
  it('lists the read replicas of a server', async () => {
    const { ctx, testing } = setup();
    const result = await azureReplicaList(ctx, 'prod-pg', { testing });
    expect(result.replicas).toHaveLength(1);
    expect(result.replicas[0]).toMatchObject({
      name: 'prod-pg-ne',
      location: 'northeurope',
      replicationRole: 'GeoAsyncReplica',
      replicationState: 'Active',
    });
  });

  it('promotes a replica to standalone: the exact PATCH body, polling, and the DATABASE_URL to use', async () => {
    fake.pollsBeforeDone = 3;
    const harness = setup({
      yes: true,
      env: { DATABASE_URL: 'postgres://lms:s3cret@prod-pg.postgres.database.azure.com:5432/lms?sslmode=require' },
    });
    const { ctx, testing } = harness;
    const result = await azureReplicaPromote(ctx, 'prod-pg-ne', { testing });
    const patches = fake.mutations();
    expect(patches).toHaveLength(1);
    expect(patches[0]!.method).toBe('PATCH');
    expect(patches[0]!.path).toBe(`/subscriptions/${fake.subscriptionId}${serverPath('prod-pg-ne')}`);
    expect(patches[0]!.body).toEqual({
      properties: { replica: { promoteMode: 'Standalone', promoteOption: 'Planned' } },
    });
    // Polled until done (3 × InProgress, then Succeeded), then the server read back.
    expect(fake.polls()).toHaveLength(4);
    expect(fake.calls().at(-1)).toBe(`GET ${serverPath('prod-pg-ne')}`);
    expect(result).toMatchObject({
      replica: 'prod-pg-ne',
      primary: 'prod-pg',
      mode: 'Standalone',
      option: 'Planned',
      role: 'None',
      state: 'Ready',
      fqdn: 'prod-pg-ne.postgres.database.azure.com',
      databaseUrl: 'postgres://lms:***@prod-pg-ne.postgres.database.azure.com:5432/lms?sslmode=require',
    });
    expect(JSON.stringify(result)).not.toContain('s3cret');
    expect(harness.stderr()).toContain('this promotes read replica prod-pg-ne (northeurope) to a standalone server');
    expect(renderReplicaPromote(result, ctx.out.style)).toContain(
      'DATABASE_URL=postgres://lms:***@prod-pg-ne.postgres.database.azure.com:5432/lms?sslmode=require',
    );
  });

  it('sends Switchover and Forced when asked, and warns that --forced can lose writes', async () => {
    const harness = setup({ yes: true });
    const { ctx, testing } = harness;
    const result = await azureReplicaPromote(ctx, 'prod-pg-ne', { testing, mode: 'switchover', forced: true });
    expect(fake.mutations()[0]!.body).toEqual({
      properties: { replica: { promoteMode: 'Switchover', promoteOption: 'Forced' } },
    });
    expect(result.role).toBe('Primary');
    expect(harness.stderr()).toContain('--forced does not wait for prod-pg-ne to catch up');
    // Without DATABASE_URL: the server's administrator and database lms.
    expect(result.databaseUrl).toBe(
      'postgres://lmsadmin:***@prod-pg-ne.postgres.database.azure.com:5432/lms?sslmode=require',
    );
  });

  it('refuses without confirmation (no terminal, no --yes), and refuses a server that is no replica; no PATCH either way', async () => {
    const refused = await cliError(azureReplicaPromote(setup().ctx, 'prod-pg-ne', { testing: setup().testing }));
    expect(refused.exitCode).toBe(2);
    expect(refused.message).toBe(
      'refusing to promote replica prod-pg-ne of prod-pg without confirmation: no terminal to ask on',
    );
    const primary = await cliError(
      azureReplicaPromote(setup({ yes: true }).ctx, 'prod-pg', { testing: setup().testing }),
    );
    expect(primary.exitCode).toBe(2);
    expect(primary.message).toBe('prod-pg is not a read replica (its role is Primary)');
    expect(fake.mutations()).toEqual([]);
  });

  it("reports a failed promotion with the service's message", async () => {
    fake.failNextOperation({
      code: 'ReplicaPromoteFailed',
      message: 'The replica cannot be promoted while the source server is being updated.',
    });
    const error = await cliError(
      azureReplicaPromote(setup({ yes: true }).ctx, 'prod-pg-ne', { testing: setup().testing }),
    );
    expect(error.exitCode).toBe(1);
    expect(error.message).toBe(
      'Azure operation failed: The replica cannot be promoted while the source server is being updated. (ReplicaPromoteFailed)',
    );
  });

  it('maps a 409 on the promotion to a one-line conflict', async () => {
    fake.respond(
      'PATCH',
      /prod-pg-ne$/,
      armError(409, 'ServerBusy', 'Another operation is in progress on server prod-pg-ne.'),
    );
    const error = await cliError(
      azureReplicaPromote(setup({ yes: true }).ctx, 'prod-pg-ne', { testing: setup().testing }),
    );
    expect(error.message).toBe(
      'server prod-pg-ne in resource group rg-lms is busy or in conflict: Another operation is in progress on server prod-pg-ne.',
    );
  });
});
