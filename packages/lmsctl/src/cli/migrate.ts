import { Option, type Command } from 'commander';
import { CliError, ExitCode, usageError } from '../errors.js';
import type { MigrateCommonOptions, MigrateDownOptions, MigrateUpOptions } from '../commands/migrate.js';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { durationMs, integerAtLeast } from './parsers.js';

function withCommonOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--migrations-dir <dir>', 'folder of NNNN_name.sql migrations (default: the project migrations)').env(
        'LMS_MIGRATIONS_DIR',
      ),
    )
    .option('--lock-timeout <duration>', 'how long to wait for a concurrent migration run', durationMs);
}

/** `lmsctl migrate …` */
export function registerMigrate(program: Command, runtime: Runtime): void {
  const migrate = program
    .command('migrate')
    .description('apply, inspect, validate, create and revert SQL migrations (under an advisory lock)')
    .addHelpText(
      'after',
      `
Every migration runs in its own transaction together with its record; concurrent runs
(parallel CI jobs) wait on an advisory lock and apply each migration exactly once. A file that
begins, commits or rolls back a transaction itself is refused before anything is applied (exit 1);
a file with the line "-- migrate:no-transaction" (for CREATE INDEX CONCURRENTLY and the like)
runs statement by statement instead, and is recorded once all of them have succeeded.
Expand/contract: a migration that drops or renames a table, view or column the running version
may still use is marked "-- migrate:contract" and deployed after the code that stops using it;
\`migrate up --expand-only\` (what a rolling deploy runs) refuses such a file, and an unmarked
DROP/RENAME, before applying anything (exit 2).
${examples(
  { cmd: 'lmsctl migrate', note: 'apply everything pending', exits: 0 },
  { cmd: 'lmsctl migrate up --to 5 --dry-run', note: 'show what would be applied up to 0005', exits: 0 },
  { cmd: 'lmsctl migrate status --json', note: 'machine-readable state of every migration', exits: 0 },
  { cmd: 'lmsctl migrate validate', note: 'exit 3 if an applied file was edited', exits: 0 },
  {
    cmd: 'lmsctl migrate --require-backup 24h',
    note: 'refuse without a verified backup from the last day',
    exits: 0,
  },
  { cmd: 'lmsctl migrate create add_course_tags', note: 'write the next NNNN_add_course_tags.sql', exits: 0 },
  {
    cmd: 'lmsctl migrate down --steps 2 --yes',
    note: 'revert the two newest migrations',
    notRunHere: 'reverts the schema the examples after it need',
  },
)}`,
    );

  withCommonOptions(
    migrate
      .command('up', { isDefault: true })
      .description('apply pending migrations in order (the default)')
      .addHelpText(
        'after',
        examples(
          { cmd: 'lmsctl migrate up --dry-run', exits: 0 },
          { cmd: 'lmsctl migrate up --to 7 --create-database', exits: 0 },
          { cmd: 'lmsctl migrate up --require-backup 24h --lock-timeout 2m', exits: 0 },
          { cmd: 'lmsctl migrate up --expand-only', note: 'while the previous version still serves', exits: 0 },
        ),
      )
      // As the default subcommand, `up` receives any mistyped subcommand name; say so clearly.
      .argument('[unknown...]')
      .usage('[options]')
      .option('--to <version>', 'stop after this version', integerAtLeast(1))
      .option('--dry-run', 'list what would be applied; change nothing')
      .option('--create-database', 'create the database first when it does not exist')
      .option(
        '--expand-only',
        'refuse migrations marked -- migrate:contract and unmarked DROP/RENAME (rolling deploys)',
      )
      .option(
        '--require-backup <max-age>',
        'refuse unless a verified backup of this database is younger (e.g. 24h)',
        durationMs,
      ),
  ).action(
    action(runtime, async (ctx, unknown: string[], flags: MigrateUpOptions) => {
      if (unknown.length > 0) {
        throw usageError(
          `unknown migrate command "${unknown[0]}"`,
          `the migrate commands are: ${migrate.commands.map((command) => command.name()).join(', ')}`,
        );
      }
      const { migrateUp, renderMigrateUp } = await import('../commands/migrate.js');
      const result = await migrateUp(ctx, flags);
      ctx.out.result(result, renderMigrateUp);
    }),
  );

  withCommonOptions(
    migrate
      .command('status')
      .description('list every migration: applied, pending, changed or missing')
      .addHelpText(
        'after',
        `
Exit codes: 0 every applied migration matches its file (pending ones are fine), 3 an applied
migration was changed or its file is missing (the list still shows everything), 1 the database
could not be read.
${examples(
  { cmd: 'lmsctl migrate status', exits: 0 },
  { cmd: 'lmsctl migrate status --json | jq \'.migrations[] | select(.state != "applied")\'', exits: 0 },
)}`,
      ),
  ).action(
    action(runtime, async (ctx, flags: MigrateCommonOptions) => {
      const { migrateStatus, renderMigrateStatus } = await import('../commands/migrate.js');
      const result = await migrateStatus(ctx, flags);
      ctx.out.result(result, renderMigrateStatus);
      if (result.problems > 0) {
        throw new CliError(
          ExitCode.verification,
          `${result.problems} applied migration(s) changed or missing (see the list)`,
          'run `lmsctl migrate validate` to see what differs',
          true,
        );
      }
    }),
  );

  withCommonOptions(
    migrate
      .command('validate')
      .description('check applied migrations against their files (exit 3 on any difference)')
      .addHelpText(
        'after',
        examples({
          cmd: 'lmsctl migrate validate --database-url postgres://lms@db:5432/lms',
          notRunHere: 'the server db:5432 of the example',
        }),
      ),
  ).action(
    action(runtime, async (ctx, flags: MigrateCommonOptions) => {
      const { migrateValidate, renderMigrateValidate } = await import('../commands/migrate.js');
      ctx.out.result(await migrateValidate(ctx, flags), renderMigrateValidate);
    }),
  );

  migrate
    .command('create')
    .description('write the next-numbered, empty migration file')
    .addHelpText('after', examples({ cmd: 'lmsctl migrate create add_course_tags', exits: 0 }))
    .argument('<name>', 'what the migration does, e.g. add_course_tags')
    .addOption(new Option('--migrations-dir <dir>', 'folder to write into').env('LMS_MIGRATIONS_DIR'))
    .action(
      action(runtime, async (ctx, name: string, flags: Pick<MigrateCommonOptions, 'migrationsDir'>) => {
        const { migrateCreate, renderMigrateCreate } = await import('../commands/migrate.js');
        ctx.out.result(await migrateCreate(ctx, name, { migrationsDir: flags.migrationsDir }), renderMigrateCreate);
      }),
    );

  withCommonOptions(
    migrate
      .command('down')
      .description('revert the newest migrations through their down sections (asks first)')
      .addHelpText(
        'after',
        examples(
          { cmd: 'lmsctl migrate down', notRunHere: 'asks on a terminal' },
          { cmd: 'lmsctl migrate down --steps 2 --yes', notRunHere: 'reverts the schema the examples after it need' },
        ),
      )
      .option('--steps <n>', 'how many migrations to revert', integerAtLeast(1), 1),
  ).action(
    action(runtime, async (ctx, flags: MigrateDownOptions) => {
      const { migrateDown, renderMigrateDown } = await import('../commands/migrate.js');
      ctx.out.result(await migrateDown(ctx, flags), renderMigrateDown);
    }),
  );
}
