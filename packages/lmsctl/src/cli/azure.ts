import { InvalidArgumentError, Option, type Command } from 'commander';
import type { AzureConnectionOptions, AzureCredentialKind } from '../azure/client.js';
import type { PitrDrillOptions } from '../commands/azure/pitr-drill.js';
import type { PitrOptions } from '../commands/azure/pitr.js';
import type { ReplicaPromoteOptions } from '../commands/azure/replica.js';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { durationMs } from './parsers.js';

/** Why no `azure` example runs in the examples test: Azure Resource Manager exists only in the cloud. */
const AZURE = 'needs Azure';

const CREDENTIALS = ['default', 'cli', 'environment', 'managed-identity'] satisfies AzureCredentialKind[];

function subscriptionId(value: string): string {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)) {
    throw new InvalidArgumentError('expected a subscription id (a UUID; `az account show --query id -o tsv`)');
  }
  return value;
}

/** ISO 8601 date and time with a zone (Z or ±hh:mm): a restore time must not depend on this machine's zone. */
function restoreTime(value: string): Date {
  const time = new Date(value);
  if (
    !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(value) ||
    Number.isNaN(time.getTime())
  ) {
    throw new InvalidArgumentError('expected an ISO 8601 time with a zone, e.g. 2026-11-28T09:30:00Z');
  }
  return time;
}

/** The options every `azure` subcommand takes, listed in each one's --help. */
function withAzureOptions(command: Command): Command {
  return command
    .option('--subscription <id>', 'Azure subscription id (default: AZURE_SUBSCRIPTION_ID)', subscriptionId)
    .option('--resource-group <name>', 'resource group of the servers (default: AZURE_RESOURCE_GROUP)')
    .addOption(
      new Option(
        '--credential <kind>',
        'how to sign in: DefaultAzureCredential, az login, AZURE_CLIENT_* variables, or managed identity',
      )
        .choices(CREDENTIALS)
        .default('default'),
    )
    .option(
      '--arm-endpoint <url>',
      'Resource Manager endpoint for sovereign clouds (default: AZURE_ARM_ENDPOINT, else https://management.azure.com)',
    );
}

/** `lmsctl azure servers|backups|pitr|pitr-drill|replica list|replica promote` */
export function registerAzure(program: Command, runtime: Runtime): void {
  const azure = program
    .command('azure')
    .description(
      'Azure Database for PostgreSQL Flexible Server: servers, backups, point-in-time restore, restore drills, replica promotion',
    )
    .addHelpText(
      'after',
      `
Every subcommand takes --subscription and --resource-group (or AZURE_SUBSCRIPTION_ID and
AZURE_RESOURCE_GROUP), --credential and --arm-endpoint. Sign in with \`az login\` (--credential cli),
a service principal in AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET (environment), or a
managed identity; the default tries them in turn. Sovereign clouds: --arm-endpoint (e.g.
https://management.usgovcloudapi.net) and AZURE_AUTHORITY_HOST (e.g. https://login.microsoftonline.us).
Runbooks: docs/runbooks/azure-pitr.md, docs/runbooks/regional-failover.md.
${examples(
  {
    cmd: 'lmsctl azure servers --subscription 00000000-0000-0000-0000-000000000000 --resource-group rg-lms',
    notRunHere: AZURE,
  },
  { cmd: 'lmsctl azure backups --server prod-pg', notRunHere: AZURE },
  {
    cmd: 'lmsctl azure pitr --server prod-pg --restore-time 2026-11-28T09:30:00Z --target-server prod-pg-0930',
    notRunHere: AZURE,
  },
  {
    cmd: 'lmsctl azure pitr-drill --server prod-pg --target-server prod-pg-drill --database-url-template "postgres://lmsadmin@{host}:5432/lms?sslmode=require"',
    notRunHere: AZURE,
  },
  { cmd: 'lmsctl azure replica list --server prod-pg', notRunHere: AZURE },
  { cmd: 'lmsctl azure replica promote --replica prod-pg-ne --yes', notRunHere: AZURE },
)}`,
    );

  withAzureOptions(
    azure
      .command('servers')
      .description('flexible servers in the resource group: state, version, location, high availability, replica role')
      .addHelpText(
        'after',
        examples(
          {
            cmd: 'lmsctl azure servers --subscription 00000000-0000-0000-0000-000000000000 --resource-group lms-prod',
            notRunHere: AZURE,
          },
          { cmd: 'lmsctl azure servers --json', notRunHere: AZURE },
        ),
      ),
  ).action(
    action(runtime, async (ctx, flags: AzureConnectionOptions) => {
      const { azureServers, renderAzureServers } = await import('../commands/azure/servers.js');
      ctx.out.result(await azureServers(ctx, flags), renderAzureServers);
    }),
  );

  withAzureOptions(
    azure
      .command('backups')
      .description("a server's backups and its point-in-time restore window (earliest and latest restore point)")
      .requiredOption('--server <name>', 'the flexible server'),
  )
    .addHelpText(
      'after',
      `
The window reaches back the server's backup retention (never before the server was created)
and forward to now. Any time in it can be restored with \`lmsctl azure pitr\`.
${examples(
  { cmd: 'lmsctl azure backups --server prod-pg', notRunHere: AZURE },
  { cmd: 'lmsctl azure backups --server prod-pg --json', notRunHere: AZURE },
)}`,
    )
    .action(
      action(runtime, async (ctx, flags: AzureConnectionOptions & { server: string }) => {
        const { azureBackups, renderAzureBackups } = await import('../commands/azure/backups.js');
        ctx.out.result(await azureBackups(ctx, flags.server, flags), renderAzureBackups);
      }),
    );

  withAzureOptions(
    azure
      .command('pitr')
      .description('point-in-time restore of a server into a new server; prints its host and the DATABASE_URL to use')
      .requiredOption('--server <name>', 'the server to restore (it is not changed)')
      .requiredOption(
        '--restore-time <iso>',
        'the moment to restore, ISO 8601 with a zone (e.g. 2026-11-28T09:30:00Z)',
        restoreTime,
      )
      .requiredOption('--target-server <name>', 'name of the new server (3-63 lowercase letters, digits, hyphens)')
      .option('--location <region>', "region of the new server (default: the source's)")
      .option('--no-wait', 'return once Azure accepted the restore, with the operation to poll'),
  )
    .addHelpText(
      'after',
      `
Before anything is created: the time must not be in the future and must lie in the source's
restore window (\`lmsctl azure backups\`), and the target name must be valid and not taken.
Then it asks, naming the source, the time and the new server (--yes skips that; without a
terminal it refuses, exit 2). It waits for the new server (progress on a terminal) and prints
its host name, the time the restore took (the recovery time achieved) and the DATABASE_URL to
point the application at. The source server keeps running unchanged.
${examples(
  {
    cmd: 'lmsctl azure pitr --server prod-pg --restore-time 2026-11-28T09:30:00Z --target-server prod-pg-0930',
    notRunHere: AZURE,
  },
  {
    cmd: 'lmsctl azure pitr --server prod-pg --restore-time 2026-11-28T10:30:00+01:00 --target-server prod-pg-0930 --yes --json',
    notRunHere: AZURE,
  },
  {
    cmd: 'lmsctl azure pitr --server prod-pg --restore-time 2026-11-28T09:30:00Z --target-server prod-pg-0930 --yes --no-wait',
    notRunHere: AZURE,
  },
)}`,
    )
    .action(
      action(runtime, async (ctx, flags: PitrOptions) => {
        const { azurePitr, renderPitr } = await import('../commands/azure/pitr.js');
        const result = await azurePitr(ctx, flags);
        ctx.out.result(result, renderPitr);
      }),
    );

  withAzureOptions(
    azure
      .command('pitr-drill')
      .description(
        'restore drill on Azure: restore to a temporary server, time it, check it, and always delete it again',
      )
      .requiredOption('--server <name>', 'the server whose backups to prove (it is not changed)')
      .requiredOption('--target-server <name>', 'name of the temporary server (must not exist; deleted at the end)')
      .option(
        '--restore-time <iso>',
        'the moment to restore (default: a minute ago, the latest restore point)',
        restoreTime,
      )
      .option('--location <region>', "region of the temporary server (default: the source's)")
      .option(
        '--database-url-template <url>',
        'URL of the restored database with {host} for its host name; password from the URL or PGPASSWORD',
      )
      .option('--rto <duration>', 'recovery time objective (default: LMS_DRILL_RTO, else 4h)', durationMs),
  )
    .addHelpText(
      'after',
      `
The recovery time is measured from the create request to the server being ready. With
--database-url-template the drill connects to the restored database and checks the newest
migration, every foreign key and the application queries (the server's firewall must let this
machine in); without it the checks are skipped and the report says so. The temporary server is
deleted afterwards — also when a check fails, the restore fails, or on Ctrl-C.
Exit codes: 0 passed, 3 a check failed, 1 the drill could not run or clean up.
${examples(
  { cmd: 'lmsctl azure pitr-drill --server prod-pg --target-server prod-pg-drill', notRunHere: AZURE },
  {
    cmd: 'PGPASSWORD=… lmsctl azure pitr-drill --server prod-pg --target-server prod-pg-drill --database-url-template "postgres://lmsadmin@{host}:5432/lms?sslmode=require" --rto 1h --json',
    notRunHere: AZURE,
  },
)}`,
    )
    .action(
      action(runtime, async (ctx, flags: PitrDrillOptions) => {
        const { azurePitrDrill, pitrDrillExitError, renderPitrDrill } = await import('../commands/azure/pitr-drill.js');
        const report = await azurePitrDrill(ctx, flags);
        ctx.out.result(report, renderPitrDrill);
        const failure = pitrDrillExitError(report);
        if (failure) throw failure;
      }),
    );

  const replica = azure
    .command('replica')
    .description('read replicas: list them, promote one (regional failover)')
    .addHelpText(
      'after',
      examples(
        { cmd: 'lmsctl azure replica list --server prod-pg', notRunHere: AZURE },
        { cmd: 'lmsctl azure replica promote --replica prod-pg-ne', notRunHere: AZURE },
        { cmd: 'lmsctl azure replica promote --replica prod-pg-ne --mode switchover --yes', notRunHere: AZURE },
        {
          cmd: 'lmsctl azure replica promote --replica prod-pg-ne --forced --yes',
          note: '# primary region down',
          notRunHere: AZURE,
        },
      ),
    );

  withAzureOptions(
    replica
      .command('list')
      .description('read replicas of a server: region, role, replication state, host')
      .addHelpText('after', examples({ cmd: 'lmsctl azure replica list --server lms-prod-pg', notRunHere: AZURE }))
      .requiredOption('--server <name>', 'the primary server'),
  ).action(
    action(runtime, async (ctx, flags: AzureConnectionOptions & { server: string }) => {
      const { azureReplicaList, renderAzureReplicaList } = await import('../commands/azure/replica.js');
      ctx.out.result(await azureReplicaList(ctx, flags.server, flags), renderAzureReplicaList);
    }),
  );

  withAzureOptions(
    replica
      .command('promote')
      .description(
        'promote a read replica: standalone (independent server) or switchover (swap roles with its primary)',
      )
      .requiredOption('--replica <name>', 'the read replica to promote')
      .addOption(
        new Option('--mode <mode>', 'standalone: independent server; switchover: swap roles with the primary')
          .choices(['standalone', 'switchover'])
          .default('standalone'),
      )
      .option(
        '--forced',
        'do not wait for the replica to catch up (the primary is unreachable); may lose recent writes',
      ),
  )
    .addHelpText(
      'after',
      `
Asks first, naming the replica and its primary (--yes skips that; without a terminal it
refuses, exit 2). Standalone ends replication for good. Switchover needs a reachable primary.
Prints the DATABASE_URL to point the application at. See docs/runbooks/regional-failover.md.
${examples(
  { cmd: 'lmsctl azure replica promote --replica prod-pg-ne', notRunHere: AZURE },
  { cmd: 'lmsctl azure replica promote --replica prod-pg-ne --mode switchover --yes', notRunHere: AZURE },
  { cmd: 'lmsctl azure replica promote --replica prod-pg-ne --forced --yes', notRunHere: AZURE },
)}`,
    )
    .action(
      action(runtime, async (ctx, flags: ReplicaPromoteOptions & { replica: string }) => {
        const { azureReplicaPromote, renderReplicaPromote } = await import('../commands/azure/replica.js');
        const result = await azureReplicaPromote(ctx, flags.replica, flags);
        ctx.out.result(result, renderReplicaPromote);
      }),
    );
}
