import { Option, type Command } from 'commander';
import type { QueueOptions } from '../queues/inspect.js';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { durationMs, integerAtLeast } from './parsers.js';

function withConnection(command: Command): Command {
  return command
    .option(
      '--redis-url <url>',
      'Redis of the queues, or any node of their cluster (default: REDIS_CLUSTER_NODES, else REDIS_URL)',
    )
    .option('--prefix <prefix>', 'queue key prefix (default: QUEUE_PREFIX, else {lms})');
}

/** `lmsctl queue …` */
export function registerQueue(program: Command, runtime: Runtime): void {
  const queue = program
    .command('queue')
    .description('inspect and repair the job queues (emails, progress, certificates, webhooks)')
    .addHelpText(
      'after',
      examples(
        { cmd: 'lmsctl queue list', exits: 0 },
        { cmd: 'lmsctl queue jobs emails --state failed --limit 50', exits: 0 },
        { cmd: 'lmsctl queue show emails 1234', exits: 0 },
        { cmd: 'lmsctl queue retry emails --all-failed', exits: 0 },
        { cmd: 'lmsctl queue clean webhooks --state completed --older-than 7d --dry-run', exits: 0 },
        { cmd: 'lmsctl queue pause --all', note: '(and: lmsctl queue resume --all)', exits: 0 },
        { cmd: 'lmsctl queue drain emails --yes', exits: 0 },
        { cmd: 'lmsctl queue watch', notRunHere: 'a live screen on a terminal until q is pressed' },
      ),
    );

  withConnection(
    queue
      .command('list')
      .description('every queue: jobs per state, paused, workers, oldest waiting job')
      .addHelpText(
        'after',
        examples({ cmd: 'lmsctl queue list', exits: 0 }, { cmd: 'lmsctl queue list --json', exits: 0 }),
      ),
  ).action(
    action(runtime, async (ctx, flags: QueueOptions) => {
      const { queueList, renderQueueList } = await import('../commands/queue.js');
      ctx.out.result(await queueList(ctx, flags), renderQueueList);
    }),
  );

  withConnection(
    queue
      .command('jobs')
      .description("a queue's jobs in one state")
      .addHelpText(
        'after',
        examples(
          { cmd: 'lmsctl queue jobs emails', exits: 0 },
          { cmd: 'lmsctl queue jobs webhooks --state delayed --limit 50', exits: 0 },
        ),
      )
      .argument('<queue>', 'emails, progress, certificates or webhooks')
      .option(
        '--state <state>',
        'waiting, active, delayed, prioritized, waiting-children, completed or failed',
        'failed',
      )
      .option('--limit <n>', 'how many', integerAtLeast(1), 20),
  ).action(
    action(runtime, async (ctx, name: string, flags: QueueOptions & { state: string; limit: number }) => {
      const { queueJobs, renderQueueJobs } = await import('../commands/queue.js');
      ctx.out.result(await queueJobs(ctx, name, flags), renderQueueJobs);
    }),
  );

  withConnection(
    queue
      .command('show')
      .description('one job: data (secrets masked), attempts, failure and stack')
      .addHelpText('after', examples({ cmd: 'lmsctl queue show emails 1234', exits: 0 }))
      .argument('<queue>', 'emails, progress, certificates or webhooks')
      .argument('<id>', 'the job id (from `lmsctl queue jobs`)'),
  ).action(
    action(runtime, async (ctx, name: string, id: string, flags: QueueOptions) => {
      const { queueShow, renderQueueShow } = await import('../commands/queue.js');
      ctx.out.result(await queueShow(ctx, name, id, flags), renderQueueShow);
    }),
  );

  withConnection(
    queue
      .command('retry')
      .description('run a failed job again, or every failed job of a queue (a job in another state is refused)')
      .addHelpText(
        'after',
        examples(
          { cmd: 'lmsctl queue retry emails 1234', exits: 0 },
          { cmd: 'lmsctl queue retry webhooks --all-failed', exits: 0 },
        ),
      )
      .argument('<queue>', 'emails, progress, certificates or webhooks')
      .argument('[id]', 'the failed job to run again (from `lmsctl queue jobs`); or --all-failed')
      .option('--all-failed', 'retry every failed job of the queue'),
  ).action(
    action(
      runtime,
      async (ctx, name: string, id: string | undefined, flags: QueueOptions & { allFailed?: boolean }) => {
        const { queueRetry } = await import('../commands/queue.js');
        ctx.out.result(
          await queueRetry(ctx, name, id, flags),
          (result) => `retried ${result.retried} job(s) of ${result.queue}`,
        );
      },
    ),
  );

  withConnection(
    queue
      .command('clean')
      .description('remove old completed or failed jobs (asks first)')
      .addHelpText(
        'after',
        examples(
          { cmd: 'lmsctl queue clean emails --state completed --older-than 1d --dry-run', exits: 0 },
          { cmd: 'lmsctl queue clean webhooks --state failed --older-than 7d --yes', exits: 0 },
        ),
      )
      .argument('<queue>', 'emails, progress, certificates or webhooks')
      .addOption(
        new Option('--state <state>', 'which finished jobs').choices(['completed', 'failed']).makeOptionMandatory(),
      )
      .requiredOption('--older-than <duration>', 'finished longer ago than this, e.g. 1h, 7d', durationMs)
      .option('--dry-run', 'count them; remove nothing'),
  ).action(
    action(
      runtime,
      async (
        ctx,
        name: string,
        flags: QueueOptions & { state: 'completed' | 'failed'; olderThan: number; dryRun?: boolean },
      ) => {
        const { queueClean } = await import('../commands/queue.js');
        const result = await queueClean(ctx, name, flags);
        ctx.out.result(
          result,
          (r) => `${r.dryRun ? 'would remove' : 'removed'} ${r.removed} ${r.state} job(s) from ${r.queue}`,
        );
      },
    ),
  );

  for (const verb of ['pause', 'resume'] as const) {
    withConnection(
      queue
        .command(verb)
        .description(
          verb === 'pause'
            ? 'stop workers taking new jobs from a queue (running ones finish)'
            : 'let workers take jobs again',
        )
        .argument('[queue]', 'emails, progress, certificates or webhooks; or --all')
        .option('--all', 'every queue')
        .addHelpText(
          'after',
          examples({ cmd: `lmsctl queue ${verb} emails`, exits: 0 }, { cmd: `lmsctl queue ${verb} --all`, exits: 0 }),
        ),
    ).action(
      action(runtime, async (ctx, name: string | undefined, flags: QueueOptions & { all?: boolean }) => {
        const { queuePause } = await import('../commands/queue.js');
        const result = await queuePause(ctx, name, { ...flags, resume: verb === 'resume' });
        ctx.out.result(result, (r) => `${r.paused ? 'paused' : 'resumed'} ${r.changed.join(', ')}`);
      }),
    );
  }

  withConnection(
    queue
      .command('drain')
      .description('drop every job of a queue that has not started (asks first, naming how many)')
      .addHelpText(
        'after',
        `
Waiting, delayed and prioritized jobs are dropped; running ones finish. Repeatable jobs (job
schedulers) stay scheduled: their next run is kept. The result counts the jobs really dropped.
${examples(
  { cmd: 'lmsctl queue drain emails', notRunHere: 'asks on a terminal' },
  { cmd: 'lmsctl queue drain emails --yes', exits: 0 },
)}`,
      )
      .argument('<queue>', 'emails, progress, certificates or webhooks'),
  ).action(
    action(runtime, async (ctx, name: string, flags: QueueOptions) => {
      const { queueDrain, renderDrain } = await import('../commands/queue.js');
      ctx.out.result(await queueDrain(ctx, name, flags), renderDrain);
    }),
  );

  withConnection(
    queue
      .command('watch')
      .description('a live table of the queues with rates per minute; q quits')
      .addHelpText(
        'after',
        `
With --json no terminal is needed: one JSON line per refresh, {"at", "queues": [… as queue list,
with "completedPerMinute" and "failedPerMinute"]}, until Ctrl-C or SIGTERM (exit 0).
${examples(
  { cmd: 'lmsctl queue watch', notRunHere: 'a live screen on a terminal until q is pressed' },
  { cmd: 'lmsctl queue watch --interval 5s', notRunHere: 'a live screen on a terminal until q is pressed' },
  { cmd: 'lmsctl queue watch --json --interval 10s >> queues.ndjson', notRunHere: 'runs until stopped' },
)}`,
      )
      .addOption(new Option('--interval <duration>', 'refresh every').argParser(durationMs).default(2000, '2s')),
  ).action(
    action(runtime, async (ctx, flags: QueueOptions & { interval: number }) => {
      const { queueWatch } = await import('../commands/queue.js');
      await queueWatch(ctx, flags);
    }),
  );
}
