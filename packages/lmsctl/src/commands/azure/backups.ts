import type { ChalkInstance } from 'chalk';
import type { CommandContext } from '../../context.js';
import { withAzureErrors, type AzureConnectionOptions } from '../../azure/client.js';
import { table } from '../../output.js';
import { restoreWindowOf, session } from '../../azure/server-facts.js';

export interface AzureBackupsResult {
  server: string;
  resourceGroup: string;
  retentionDays: number;
  geoRedundant: boolean;
  createdAt: string | null;
  /** The restore window: any time from `earliestRestorePoint` to `latestRestorePoint` (now). */
  earliestRestorePoint: string;
  latestRestorePoint: string;
  backups: Array<{ name: string; type: string | null; completedAt: string | null; source: string | null }>;
}

/** `lmsctl azure backups --server NAME`: the server's backups and its point-in-time restore window. */
export async function azureBackups(
  ctx: CommandContext,
  server: string,
  options: AzureConnectionOptions,
): Promise<AzureBackupsResult> {
  const azure = await session(ctx, options);
  const { scope, client } = azure;
  return withAzureErrors(scope, async () => {
    const found = await client.servers.get(scope.resourceGroup, server);
    const window = restoreWindowOf(found, new Date());
    const backups: AzureBackupsResult['backups'] = [];
    for await (const backup of client.backupsAutomaticAndOnDemand.listByServer(scope.resourceGroup, server)) {
      backups.push({
        name: backup.name ?? '',
        type: backup.backupType ?? null,
        completedAt: backup.completedTime?.toISOString() ?? null,
        source: backup.source ?? null,
      });
    }
    // Newest first, as `backup list` shows local backups.
    backups.sort((a, b) => (b.completedAt ?? '').localeCompare(a.completedAt ?? ''));
    return {
      server,
      resourceGroup: scope.resourceGroup,
      retentionDays: window.retentionDays,
      geoRedundant: found.backup?.geoRedundantBackup === 'Enabled',
      createdAt: found.systemData?.createdAt?.toISOString() ?? null,
      earliestRestorePoint: window.earliest.toISOString(),
      latestRestorePoint: window.latest.toISOString(),
      backups,
    };
  });
}

export function renderAzureBackups(result: AzureBackupsResult, style: ChalkInstance): string {
  const lines = [
    `${style.bold(result.server)}: backups kept ${result.retentionDays} days${result.geoRedundant ? ', geo-redundant' : ''}`,
    `restore window: ${result.earliestRestorePoint} → ${result.latestRestorePoint} (now)`,
    '',
  ];
  if (result.backups.length === 0) lines.push('no backups listed yet');
  else {
    lines.push(
      table(
        ['COMPLETED', 'TYPE', 'NAME'],
        result.backups.map((backup) => [backup.completedAt ?? '?', backup.type ?? '?', backup.name]),
        style,
      ),
    );
  }
  lines.push(
    '',
    `restore with: lmsctl azure pitr --server ${result.server} --restore-time <time in the window> --target-server <new name>`,
  );
  return lines.join('\n');
}
