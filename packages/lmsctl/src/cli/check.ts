import { Argument, type Command } from 'commander';
import type { CheckOptions } from '../commands/check.js';
import { CliError, ExitCode } from '../errors.js';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { durationMs } from './parsers.js';

/** `lmsctl check daily|weekly|predeploy` */
export function registerCheck(program: Command, runtime: Runtime): void {
  program
    .command('check')
    .description('the operational checklists, automated where a machine can answer (exit 1 if a check failed)')
    .addArgument(new Argument('<checklist>', 'which checklist').choices(['daily', 'weekly', 'predeploy']))
    .option('--api-url <url>', 'where the API answers /ready (default http://127.0.0.1:PORT)')
    .option('--prometheus-url <url>', 'Prometheus, for the error rate and p99 latency (daily)')
    .option('--alertmanager-url <url>', 'Alertmanager, for the alert delivery test (weekly)')
    .option('--max-backup-age <duration>', 'predeploy: the newest verified backup must be younger', durationMs)
    .option('--image <image>', 'weekly: the LMS image trivy scans (default: LMS_IMAGE, else lms:latest)')
    .option(
      '--redis-url <url>',
      'Redis of the queues, or any node of their cluster (default: REDIS_CLUSTER_NODES, else REDIS_URL)',
    )
    .option('--prefix <prefix>', 'queue key prefix (default: QUEUE_PREFIX)')
    .addHelpText(
      'after',
      `
daily: API, PostgreSQL and Redis health; 5xx rate and p99 from Prometheus; a backup in the last
26 h; free disk of the backup folder and the database. weekly: a drill passed in the last 8 days
(when none ran, a \`backup verify --deep\` of the newest backup in that time counts instead);
slow queries (pg_stat_statements); a test alert through Alertmanager; \`pnpm audit --prod\` of the
repository lmsctl runs from (critical or high advisories fail, the registry not answering warns);
\`trivy image\` of --image (high or critical fail; without trivy a warning says how to install
it). predeploy: migrations
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
      action(runtime, async (ctx, checklist: 'daily' | 'weekly' | 'predeploy', flags: CheckOptions) => {
        const { check, renderCheck } = await import('../commands/check.js');
        const result = await check(ctx, checklist, flags);
        ctx.out.result(result, renderCheck);
        if (!result.passed)
          throw new CliError(ExitCode.failed, `${checklist} checks failed (see FAIL above)`, undefined, true);
      }),
    );
}
