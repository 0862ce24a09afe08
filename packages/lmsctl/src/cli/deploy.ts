import { Option, type Command } from 'commander';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { durationMs } from './parsers.js';

interface StackFlags {
  env: 'prod' | 'staging';
  projectName?: string;
  override?: string[];
}

function withStackOptions(command: Command): Command {
  return command
    .addOption(new Option('--env <env>', 'which stack').choices(['prod', 'staging']).default('prod'))
    .option(
      '--project-name <name>',
      'the Compose project (default: COMPOSE_PROJECT_NAME, else lms or lms-staging by --env)',
    )
    .option('--override <file...>', "more Compose files applied on top of the environment's, in order");
}

function withRolloutOptions(command: Command): Command {
  return command
    .option(
      '--require-backup <max-age>',
      'refuse unless a verified backup of the database is younger (e.g. 24h)',
      durationMs,
    )
    .addOption(
      new Option('--ready-timeout <duration>', 'how long a new container may take to answer /ready')
        .argParser(durationMs)
        .default(120_000, '2m'),
    );
}

const stackOf = (flags: StackFlags) => ({ env: flags.env, projectName: flags.projectName, overrides: flags.override });

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
replaced goes back to the previous image the same way: exit 1 naming why. Every attempt is
recorded (deploy history: compose/.deploy/<project>.jsonl, LMS_DEPLOY_DIR).
${examples(
  {
    cmd: 'lmsctl deploy --image registry.example.com/lms:1.4.0 --env-file /etc/lms/prod.env --backup',
    notRunHere: 'needs a running production stack',
  },
  { cmd: 'lmsctl deploy rollback --env-file /etc/lms/prod.env', notRunHere: 'needs a running production stack' },
  { cmd: 'lmsctl deploy history --json', notRunHere: 'reads the deploy history of the stack' },
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
