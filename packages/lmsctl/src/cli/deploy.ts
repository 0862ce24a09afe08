import { InvalidArgumentError, Option, type Command } from 'commander';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { durationMs } from './parsers.js';

interface StackFlags {
  env: 'prod' | 'staging';
  projectName?: string;
  override?: string[];
  orchestrator?: 'compose' | 'swarm';
}

function withStackOptions(command: Command): Command {
  return command
    .addOption(new Option('--env <env>', 'which stack').choices(['prod', 'staging']).default('prod'))
    .option(
      '--project-name <name>',
      'the Compose project (default: COMPOSE_PROJECT_NAME, else lms or lms-staging by --env)',
    )
    .option('--override <file...>', "more Compose files applied on top of the environment's, in order")
    .addOption(
      new Option(
        '--orchestrator <name>',
        'compose (one host) or swarm (default: swarm when the engine is a manager running this project as a stack)',
      ).choices(['compose', 'swarm']),
    );
}

function withRolloutOptions(command: Command): Command {
  return command
    .option(
      '--require-backup <max-age>',
      'refuse unless a verified backup of the database is younger (e.g. 24h)',
      durationMs,
    )
    .addOption(
      new Option(
        '--ready-timeout <duration>',
        'how long a new container (a Swarm service: its new tasks) may take to be ready',
      )
        .argParser(durationMs)
        .default(120_000, '2m'),
    );
}

/** "2" (percentage points) → 0.02. */
function percentagePoints(value: string): number {
  const points = Number(value);
  if (!Number.isFinite(points) || points <= 0 || points > 100) {
    throw new InvalidArgumentError('a number of percentage points between 0 and 100, e.g. 2');
  }
  return points / 100;
}

function positiveNumber(value: string): number {
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 1) throw new InvalidArgumentError('a number above 1, e.g. 2');
  return number;
}

const stackOf = (flags: StackFlags) => ({
  env: flags.env,
  projectName: flags.projectName,
  overrides: flags.override,
  orchestrator: flags.orchestrator,
});

/** `lmsctl deploy [start] --image REF`, `deploy rollback [IMAGE]`, `deploy history` */
export function registerDeploy(program: Command, runtime: Runtime): void {
  const deploy = program
    .command('deploy')
    .description('rolling updates of the running prod or staging stack, rollbacks and their history')
    .addHelpText(
      'after',
      `
One host, Docker Compose: the stack runs (lmsctl up --env prod); deploy replaces it in place.
Staging first: a production deploy refuses an image (by id) that the staging stack's history
does not show as deployed successfully, unless --skip-staging.
Preflight first, changing nothing: the image is here (or pulls), its migrations agree with the
database (migrate validate) and none of the pending ones contracts the schema (expand-only, see
lmsctl migrate --help). Then: a backup with --backup; the pending migrations, run by the new
image's lmsctl inside the stack; the API containers one at a time — a new one starts beside
them, Caddy routes to it once its /ready answers, an old one leaves Caddy's upstreams, finishes
its requests and is removed; the worker and the scheduler, stopped gracefully and recreated.
A new container that does not become ready or healthy is removed before it serves, and what was
replaced goes back to the previous image the same way: exit 1 naming why. Then a watch window
(--watch, 2m): every API container stays healthy and, with Prometheus, the 5xx share of user
requests and the p99 over the last minute stay within the margins of their level before the
deploy — else the same rollback. Every attempt is
recorded (deploy history: compose/.deploy/<project>.jsonl, LMS_DEPLOY_DIR).
Several hosts, Docker Swarm (the stack started with lmsctl up --orchestrator swarm; found by
itself on a manager): the same preflight, migrations (in a one-off container of the new image),
watch window and history, but Swarm rolls each service — docker service update --image, new
tasks start-first and count once healthy, Swarm rolls a service back by itself when a new task
fails, and lmsctl rolls it back (docker service rollback) when --ready-timeout passes or the
watch window fails.
${examples(
  {
    cmd: 'lmsctl deploy --image registry.example.com/lms:1.4.0 --env-file /etc/lms/prod.env --backup',
    notRunHere: 'needs a running production stack',
  },
  { cmd: 'lmsctl deploy rollback --env-file /etc/lms/prod.env', notRunHere: 'needs a running production stack' },
  { cmd: 'lmsctl deploy history --json', notRunHere: 'reads the deploy history of the stack' },
  {
    cmd: 'lmsctl deploy --image registry.example.com/lms:1.4.0 --orchestrator swarm',
    note: 'a Swarm stack',
    notRunHere: 'needs a Swarm manager running the production stack',
  },
)}`,
    );

  withRolloutOptions(
    withStackOptions(
      deploy
        .command('start', { isDefault: true })
        .description('deploy an image to the running stack (the default)')
        .requiredOption('--image <ref>', 'the LMS image to run (tag or digest)')
        .option('--backup', 'take a backup inside the stack before migrating')
        .option('--skip-staging', 'prod: deploy an image staging never ran successfully')
        .addOption(
          new Option('--watch <duration>', 'after the rollout, watch health and error rates this long (0: no watch)')
            .argParser(durationMs)
            .default(120_000, '2m'),
        )
        .option(
          '--prometheus-url <url>',
          'Prometheus for the watch window (default http://127.0.0.1:$PROMETHEUS_PORT, 9090, when it answers)',
        )
        .addOption(
          new Option('--max-error-rise <points>', 'roll back when the 5xx share rises by more percentage points')
            .argParser(percentagePoints)
            .default(0.02, '2'),
        )
        .addOption(
          new Option('--max-latency-factor <n>', 'roll back when p99 exceeds n times its level before (and + 0.5 s)')
            .argParser(positiveNumber)
            .default(2),
        )
        .option(
          '--staging-project <name>',
          'prod: the staging stack whose deploy history must show the image',
          'lms-staging',
        )
        .option(
          '--allow-contract',
          'also run migrations marked -- migrate:contract (not gapless for the running version)',
        )
        .addHelpText(
          'after',
          examples(
            {
              cmd: 'lmsctl deploy --image registry.example.com/lms:1.4.0 --env staging --env-file /etc/lms/staging.env',
              notRunHere: 'needs a running staging stack',
            },
            {
              cmd: 'lmsctl deploy start --image registry.example.com/lms:1.4.0 --backup --require-backup 6h --ready-timeout 5m',
              notRunHere: 'needs a running production stack',
            },
          ),
        ),
    ),
  ).action(
    action(
      runtime,
      async (
        ctx,
        flags: StackFlags & {
          image: string;
          backup?: boolean;
          allowContract?: boolean;
          skipStaging?: boolean;
          stagingProject: string;
          watch: number;
          prometheusUrl?: string;
          maxErrorRise: number;
          maxLatencyFactor: number;
          requireBackup?: number;
          readyTimeout: number;
        },
      ) => {
        const { deploy: run, renderDeploy } = await import('../commands/deploy/deploy.js');
        ctx.out.result(
          await run(ctx, {
            ...stackOf(flags),
            image: flags.image,
            backup: flags.backup,
            allowContract: flags.allowContract,
            skipStaging: flags.skipStaging,
            stagingProject: flags.stagingProject,
            watchMs: flags.watch,
            prometheusUrl: flags.prometheusUrl,
            maxErrorRise: flags.maxErrorRise,
            maxLatencyFactor: flags.maxLatencyFactor,
            requireBackupMs: flags.requireBackup,
            readyTimeoutMs: flags.readyTimeout,
          }),
          renderDeploy,
        );
      },
    ),
  );

  withRolloutOptions(
    withStackOptions(
      deploy
        .command('rollback')
        .description('roll the stack back to IMAGE, or to the image before the last successful deploy')
        .argument('[image]', 'the image to go back to (default: the previous one in the history)')
        .addHelpText(
          'after',
          examples(
            {
              cmd: 'lmsctl deploy rollback',
              note: 'to the image before the last successful deploy',
              notRunHere: 'needs a running production stack',
            },
            {
              cmd: 'lmsctl deploy rollback registry.example.com/lms:1.3.2 --env staging',
              notRunHere: 'needs a running staging stack',
            },
          ),
        ),
    ),
  ).action(
    action(
      runtime,
      async (ctx, image: string | undefined, flags: StackFlags & { requireBackup?: number; readyTimeout: number }) => {
        const { deployRollback, renderDeploy } = await import('../commands/deploy/deploy.js');
        ctx.out.result(
          await deployRollback(ctx, {
            ...stackOf(flags),
            image,
            requireBackupMs: flags.requireBackup,
            readyTimeoutMs: flags.readyTimeout,
          }),
          renderDeploy,
        );
      },
    ),
  );

  deploy
    .command('record')
    .description("write one deploy record (a history line, JSON on stdin) into the database's deployments table")
    .addHelpText(
      'after',
      `
lmsctl deploy runs this inside the stack when a deploy ends; by hand it brings an earlier
history line (one line of compose/.deploy/<project>.jsonl) into the table.
${examples({
  cmd: 'lmsctl deploy record --database-url postgres://lms@db:5432/lms < deploy-record.json',
  notRunHere: 'the database of the example',
})}`,
    )
    .action(
      action(runtime, async (ctx) => {
        const { recordDeployment } = await import('../commands/deploy/record.js');
        ctx.out.result(await recordDeployment(ctx), (result) => `recorded ${result.recorded}`);
      }),
    );

  withStackOptions(
    deploy
      .command('history')
      .description('every deploy and rollback of the stack: image, who, when, migrations, outcome')
      .addHelpText(
        'after',
        examples(
          { cmd: 'lmsctl deploy history', exits: 0 },
          { cmd: "lmsctl deploy history --json | jq '.deploys[-1]'", exits: 0 },
        ),
      ),
  ).action(
    action(runtime, async (ctx, flags: StackFlags) => {
      const { history, renderHistory } = await import('../commands/deploy/deploy.js');
      ctx.out.result(await history(ctx, stackOf(flags)), renderHistory);
    }),
  );
}
