import type { ChalkInstance } from 'chalk';
import { formatDuration } from '@lms/core/duration';
import type { CommandContext } from '../../context.js';
import { connectAzure, resolveAzureScope, withAzureErrors, type AzureConnectionOptions } from '../../azure/client.js';
import { confirmOrRefuse } from '../../lib/confirm.js';
import { appDatabaseUrl, waitForOperation } from '../../azure/server-facts.js';
import { ISO, checkRequest, planRestore, startRestore, type RestoreRequest } from '../../azure/point-in-time.js';

export interface PitrOptions extends AzureConnectionOptions, RestoreRequest {
  /** False (`--no-wait`): return as soon as Azure accepted the restore, with the operation to poll. */
  wait?: boolean;
}

export interface PitrResult {
  /** `ready`: the new server is up; `started`: --no-wait returned once Azure accepted it. */
  status: 'ready' | 'started';
  source: { name: string; resourceId: string };
  restoreTime: string;
  window: { earliest: string; latest: string; retentionDays: number };
  target: { name: string; resourceId: string; location: string; fqdn: string | null; state: string | null };
  startedAt: string;
  readyAt: string | null;
  /** Create request → server ready: the recovery time achieved. */
  elapsedMs: number | null;
  /** Where to point the application (password masked). */
  databaseUrl: string | null;
  /** The Azure-AsyncOperation URL of the restore (GET it with a token to follow it). */
  operationUrl: string | null;
}

/**
 * `lmsctl azure pitr`: restores a flexible server to a point in time into a new server.
 * Validates first (time in the future or outside the retention window, invalid or taken target
 * name — exit 2, nothing created), asks unless --yes, starts the PointInTimeRestore create and
 * polls it to the end (or returns the operation with --no-wait).
 */
export async function azurePitr(ctx: CommandContext, options: PitrOptions): Promise<PitrResult> {
  const now = new Date();
  const scope = resolveAzureScope(ctx, options);
  checkRequest(options, now);
  const azure = await connectAzure(ctx, scope, options.testing);
  return withAzureErrors(scope, async () => {
    const plan = await planRestore(azure, options, now);
    const time = ISO(options.restoreTime);
    ctx.out.info(
      `this creates a new server ${options.targetServer} in ${plan.location} (resource group ${scope.resourceGroup}) ` +
        `from ${options.server} as it was at ${time}; ${options.server} itself is not changed`,
    );
    await confirmOrRefuse(`Restore ${options.server} as of ${time} into new server ${options.targetServer}?`, {
      yes: ctx.yes,
      action: `restore ${options.server} to ${time} into new server ${options.targetServer}`,
      stderr: ctx.out.streams.stderr,
    });
    const startedAt = new Date();
    const { poller, accepted } = await startRestore(azure, options.targetServer, plan.body, {
      yes: false,
      operationUrl: null,
    });
    const result: PitrResult = {
      status: 'started',
      source: { name: options.server, resourceId: plan.sourceId },
      restoreTime: time,
      window: {
        earliest: ISO(plan.window.earliest),
        latest: ISO(plan.window.latest),
        retentionDays: plan.window.retentionDays,
      },
      target: {
        name: options.targetServer,
        resourceId: azure.serverId(options.targetServer),
        location: plan.location,
        fqdn: null,
        state: null,
      },
      startedAt: ISO(startedAt),
      readyAt: null,
      elapsedMs: null,
      databaseUrl: null,
      operationUrl: accepted.operationUrl,
    };
    if (options.wait === false) return result;

    const server = await waitForOperation(ctx, `restoring ${options.server} → ${options.targetServer}`, poller);
    const readyAt = new Date();
    result.status = 'ready';
    result.readyAt = ISO(readyAt);
    result.elapsedMs = readyAt.getTime() - startedAt.getTime();
    result.target.fqdn = server.fullyQualifiedDomainName ?? null;
    result.target.state = server.state ?? null;
    result.target.resourceId = server.id ?? result.target.resourceId;
    result.databaseUrl = result.target.fqdn
      ? appDatabaseUrl(ctx, result.target.fqdn, server.administratorLogin ?? plan.source.administratorLogin)
      : null;
    return result;
  });
}

export function renderPitr(result: PitrResult, style: ChalkInstance): string {
  if (result.status === 'started') {
    return [
      `restore of ${result.source.name} as of ${result.restoreTime} into ${result.target.name} started (not waiting)`,
      `  operation: ${result.operationUrl ?? 'unknown'}`,
      `  follow it with \`lmsctl azure servers\` (state Provisioning → Ready) or \`az rest --method get --url <operation>\``,
    ].join('\n');
  }
  const lines = [
    `${style.green('restored')} ${result.source.name} as of ${result.restoreTime} into ${style.bold(result.target.name)} (${result.target.location}) in ${formatDuration(result.elapsedMs ?? 0)}`,
    `  server   ${result.target.fqdn ?? 'unknown'} (${result.target.state ?? 'state unknown'})`,
  ];
  if (result.databaseUrl) {
    lines.push('  point the application at it (set the password):', `    DATABASE_URL=${result.databaseUrl}`);
  }
  lines.push('  then check it: lmsctl migrate status, and docs/runbooks/azure-pitr.md');
  return lines.join('\n');
}
