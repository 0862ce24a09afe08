import { Argument, type Command } from 'commander';
import { CliError, ExitCode } from '../errors.js';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { durationMs } from './parsers.js';

interface StatusFlags {
  apiUrl?: string;
  redisUrl?: string;
  prefix?: string;
}

/** `lmsctl status` and `lmsctl check daily|weekly|predeploy` */
export function registerStatus(program: Command, runtime: Runtime): void {
  program
    .command('status')
    .description(
      'one screen: API readiness, PostgreSQL, Redis, queues, newest backup and drill (exit 1 if anything failed)',
    )
    .option('--api-url <url>', 'where the API answers /ready (default http://127.0.0.1:PORT)')
    .option('--redis-url <url>', 'Redis of the queues (default: REDIS_URL)')
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

  program
    .command('check')
    .description('the operational checklists, automated where a machine can answer (exit 1 if a check failed)')
    .addArgument(new Argument('<checklist>', 'which checklist').choices(['daily', 'weekly', 'predeploy']))
    .option('--api-url <url>', 'where the API answers /ready (default http://127.0.0.1:PORT)')
    .option('--prometheus-url <url>', 'Prometheus, for the error rate and p99 latency (daily)')
    .option('--alertmanager-url <url>', 'Alertmanager, for the alert delivery test (weekly)')
    .option('--max-backup-age <duration>', 'predeploy: the newest verified backup must be younger', durationMs)
    .option('--redis-url <url>', 'Redis of the queues (default: REDIS_URL)')
    .option('--prefix <prefix>', 'queue key prefix (default: QUEUE_PREFIX)')
    .addHelpText(
      'after',
      `
daily: API, PostgreSQL and Redis health; 5xx rate and p99 from Prometheus; a backup in the last
26 h; free disk of the backup folder and the database. weekly: a drill passed in the last 8 days;
slow queries (pg_stat_statements); a test alert through Alertmanager. predeploy: migrations
validate; a verified backup younger than --max-backup-age (24h); the API and queues healthy.
What a machine cannot check is listed as manual.
${examples(
  {
    cmd: 'lmsctl check daily --prometheus-url http://prometheus:9090',
    notRunHere: 'needs a running API and Prometheus',
  },
  { cmd: 'lmsctl check weekly --alertmanager-url http://alertmanager:9093', notRunHere: 'needs Alertmanager' },
  { cmd: 'lmsctl check predeploy --max-backup-age 6h --json', notRunHere: 'needs a running API' },
)}`,
    )
    .action(
      action(
        runtime,
        async (
          ctx,
          checklist: 'daily' | 'weekly' | 'predeploy',
          flags: StatusFlags & { prometheusUrl?: string; alertmanagerUrl?: string; maxBackupAge?: number },
        ) => {
          const { check, renderCheck } = await import('../commands/check.js');
          const result = await check(ctx, checklist, { ...flags, maxBackupAgeMs: flags.maxBackupAge });
          ctx.out.result(result, renderCheck);
          if (!result.passed)
            throw new CliError(ExitCode.failed, `${checklist} checks failed (see FAIL above)`, undefined, true);
        },
      ),
    );
}
