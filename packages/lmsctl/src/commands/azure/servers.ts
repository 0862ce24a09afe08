import type { ChalkInstance } from 'chalk';
import type { CommandContext } from '../../context.js';
import { withAzureErrors, type AzureConnectionOptions } from '../../azure/client.js';
import { table } from '../../output.js';
import { session, summarizeServer, type AzureServerSummary } from '../../azure/server-facts.js';

export interface AzureServersResult {
  subscriptionId: string;
  resourceGroup: string;
  servers: AzureServerSummary[];
}

/** `lmsctl azure servers`: the flexible servers of the resource group. */
export async function azureServers(ctx: CommandContext, options: AzureConnectionOptions): Promise<AzureServersResult> {
  const azure = await session(ctx, options);
  const { scope } = azure;
  return withAzureErrors(scope, async () => {
    const servers: AzureServerSummary[] = [];
    for await (const server of azure.client.servers.listByResourceGroup(scope.resourceGroup)) {
      servers.push(summarizeServer(server));
    }
    servers.sort((a, b) => a.name.localeCompare(b.name));
    return { subscriptionId: scope.subscriptionId, resourceGroup: scope.resourceGroup, servers };
  });
}

export function renderAzureServers(result: AzureServersResult, style: ChalkInstance): string {
  if (result.servers.length === 0) return `no flexible servers in resource group ${result.resourceGroup}`;
  return table(
    ['NAME', 'STATE', 'VERSION', 'LOCATION', 'HA', 'ROLE', 'FQDN'],
    result.servers.map((server) => [
      server.name,
      server.state === 'Ready' ? style.green(server.state) : (server.state ?? '?'),
      server.version ?? '?',
      server.location,
      server.highAvailability,
      server.primary ? `${server.replicationRole} of ${server.primary}` : (server.replicationRole ?? 'None'),
      server.fqdn ?? '',
    ]),
    style,
  );
}
