import type { ChalkInstance } from 'chalk';
import { formatDuration } from '@lms/core/duration';
import type { CommandContext } from '../../context.js';
import { usageError } from '../../errors.js';
import { withAzureErrors, type AzureConnectionOptions } from '../../azure/client.js';
import { confirmOrRefuse } from '../../lib/confirm.js';
import { table } from '../../output.js';
import {
  appDatabaseUrl,
  session,
  summarizeServer,
  type AzureServerSummary,
  waitForOperation,
} from '../../azure/server-facts.js';
import { isReplicaRole } from '../../azure/server-facts.js';

export interface AzureReplicaListResult {
  server: string;
  replicas: AzureServerSummary[];
}

/** `lmsctl azure replica list --server NAME`: the read replicas of a server. */
export async function azureReplicaList(
  ctx: CommandContext,
  server: string,
  options: AzureConnectionOptions,
): Promise<AzureReplicaListResult> {
  const azure = await session(ctx, options);
  return withAzureErrors(azure.scope, async () => {
    const replicas: AzureServerSummary[] = [];
    for await (const replica of azure.client.replicas.listByServer(azure.scope.resourceGroup, server)) {
      replicas.push(summarizeServer(replica));
    }
    return { server, replicas };
  });
}

export function renderAzureReplicaList(result: AzureReplicaListResult, style: ChalkInstance): string {
  if (result.replicas.length === 0) return `${result.server} has no read replicas`;
  return table(
    ['REPLICA', 'LOCATION', 'ROLE', 'REPLICATION', 'STATE', 'FQDN'],
    result.replicas.map((replica) => [
      replica.name,
      replica.location,
      replica.replicationRole ?? '?',
      replica.replicationState === 'Active' ? style.green(replica.replicationState) : (replica.replicationState ?? '?'),
      replica.state ?? '?',
      replica.fqdn ?? '',
    ]),
    style,
  );
}

export interface ReplicaPromoteOptions extends AzureConnectionOptions {
  /** standalone: the replica becomes an independent server; switchover: it swaps roles with its primary. */
  mode?: 'standalone' | 'switchover';
  /** Do not wait for the replica to catch up (the primary is gone): recent transactions may be lost. */
  forced?: boolean;
}

export interface ReplicaPromoteResult {
  replica: string;
  /** The primary it replicated from. */
  primary: string | null;
  mode: 'Standalone' | 'Switchover';
  option: 'Planned' | 'Forced';
  /** Role and state after the promotion. */
  role: string | null;
  state: string | null;
  fqdn: string | null;
  elapsedMs: number;
  /** Where to point the application (password masked). */
  databaseUrl: string | null;
}

/**
 * `lmsctl azure replica promote`: the seed's regional failover step. Checks that the server is
 * a read replica, says what will happen and asks, then promotes it through a PATCH of
 * `properties.replica` and waits for the operation.
 */
export async function azureReplicaPromote(
  ctx: CommandContext,
  replica: string,
  options: ReplicaPromoteOptions,
): Promise<ReplicaPromoteResult> {
  const mode = options.mode === 'switchover' ? 'Switchover' : 'Standalone';
  const option = options.forced ? 'Forced' : 'Planned';
  const azure = await session(ctx, options);
  const { scope, client } = azure;
  return withAzureErrors(scope, async () => {
    const found = summarizeServer(await client.servers.get(scope.resourceGroup, replica));
    if (!isReplicaRole(found.replicationRole)) {
      throw usageError(
        `${replica} is not a read replica (its role is ${found.replicationRole ?? 'None'})`,
        '`lmsctl azure replica list --server <primary>` lists the replicas of a server',
      );
    }
    const primary = found.primary ?? 'its primary';
    ctx.out.info(
      mode === 'Standalone'
        ? `this promotes read replica ${replica} (${found.location}) to a standalone server: it stops replicating from ${primary} for good and accepts writes`
        : `this switches ${replica} (${found.location}) and ${primary} over: ${replica} becomes the primary, ${primary} its replica`,
    );
    if (options.forced) {
      ctx.out.warn(`--forced does not wait for ${replica} to catch up: transactions not yet replicated are lost`);
    }
    await confirmOrRefuse(`Promote ${replica} (${mode.toLowerCase()}, ${option.toLowerCase()})?`, {
      yes: ctx.yes,
      action: `promote replica ${replica} of ${primary}`,
      stderr: ctx.out.streams.stderr,
    });
    const started = Date.now();
    const poller = await client.servers.beginUpdate(
      scope.resourceGroup,
      replica,
      { replica: { promoteMode: mode, promoteOption: option } },
      azure.lroOptions,
    );
    const done = await waitForOperation(ctx, `promoting ${replica}`, poller);
    // The operation normally ends with the server's new state; without a body, read it.
    const after = done?.name ? done : await client.servers.get(scope.resourceGroup, replica);
    const summary = summarizeServer(after);
    return {
      replica,
      primary: found.primary,
      mode,
      option,
      role: summary.replicationRole,
      state: summary.state,
      fqdn: summary.fqdn,
      elapsedMs: Date.now() - started,
      databaseUrl: summary.fqdn ? appDatabaseUrl(ctx, summary.fqdn, after.administratorLogin) : null,
    };
  });
}

export function renderReplicaPromote(result: ReplicaPromoteResult, style: ChalkInstance): string {
  const what =
    result.mode === 'Standalone'
      ? 'to a standalone server'
      : `as the primary (${result.primary ?? 'the old primary'} is now its replica)`;
  const lines = [
    `${style.green('promoted')} ${result.replica}${result.primary ? ` (replica of ${result.primary})` : ''} ${what} in ${formatDuration(result.elapsedMs)}`,
    `  role ${result.role ?? '?'}, state ${result.state ?? '?'}${result.option === 'Forced' ? ', forced' : ''}`,
  ];
  if (result.databaseUrl) {
    lines.push('  point the application at it (set the password):', `    DATABASE_URL=${result.databaseUrl}`);
  }
  return lines.join('\n');
}
