import type { Command } from 'commander';
import { CliError, ExitCode } from '../errors.js';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';

export interface StatusFlags {
  apiUrl?: string;
  redisUrl?: string;
  prefix?: string;
}

/** `lmsctl status` */
export function registerStatus(program: Command, runtime: Runtime): void {
  program
    .command('status')
    .description(
      'one screen: API readiness, PostgreSQL, the read replica and its lag (DATABASE_READ_URL), Redis, queues, newest backup and drill (exit 1 if anything failed)',
    )
    .option('--api-url <url>', 'where the API answers /ready (default http://127.0.0.1:PORT)')
    .option(
      '--redis-url <url>',
      'Redis of the queues, or any node of their cluster (default: REDIS_CLUSTER_NODES, else REDIS_URL)',
    )
    .option('--prefix <prefix>', 'queue key prefix (default: QUEUE_PREFIX)')
    .addHelpText(
      'after',
      examples(
        { cmd: 'lmsctl status', notRunHere: 'needs a running API' },
        { cmd: 'lmsctl status --api-url https://lms.example.com --json', notRunHere: 'the API of the example' },
      ),
    )
    .action(
      action(runtime, async (ctx, flags: StatusFlags) => {
        const { status, renderStatus } = await import('../commands/status.js');
        const result = await status(ctx, flags);
        ctx.out.result(result, renderStatus);
        if (!result.healthy)
          throw new CliError(ExitCode.failed, 'something is not healthy (see FAIL above)', undefined, true);
      }),
    );
}
