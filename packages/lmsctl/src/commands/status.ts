import type { ChalkInstance } from 'chalk';
import { type CommandContext } from '../context.js';
import {
  probeApi,
  probeBackups,
  probeDrill,
  probePostgres,
  probeQueues,
  probeRedis,
  renderItems,
  type ProbeOptions,
  type StatusItem,
} from '../health/probes.js';
import { probeReplica } from '../health/replica.js';
import { probePgBouncer } from '../health/pgbouncer.js';
import { accessTokenKeysItem, backupKeyItem, webhookKeysItem } from '../secrets/live-keys.js';

export interface StatusResult {
  healthy: boolean;
  items: StatusItem[];
}

/** One screen: is production healthy and recoverable, and which keys are live? */
export async function status(ctx: CommandContext, options: ProbeOptions = {}): Promise<StatusResult> {
  const items = (
    await Promise.all([
      probeApi(ctx, options),
      probePostgres(ctx),
      probePgBouncer(ctx),
      probeReplica(ctx),
      probeRedis(ctx, options),
      probeQueues(ctx, options),
      probeBackups(ctx),
      probeDrill(ctx),
      Promise.resolve([accessTokenKeysItem(ctx)]),
      webhookKeysItem(ctx),
      backupKeyItem(ctx),
    ])
  ).flat();
  return { healthy: !items.some((item) => item.state === 'fail'), items };
}

export function renderStatus(result: StatusResult, style: ChalkInstance): string {
  const verdict = result.healthy ? style.green('healthy') : style.red('NOT healthy');
  return `${renderItems(result.items, style)}\n\n${verdict}${result.items.some((item) => item.state === 'warn') ? ' (with warnings)' : ''}`;
}

/** The database server's data folder, when it runs on this machine and says where it is. */
