import { Option, type Command } from 'commander';
import { usageError } from '../errors.js';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { durationMs, integerAtLeast } from './parsers.js';

interface CommonFlags {
  migrationsDir?: string;
  lockTimeout?: number;
}

const common = (flags: CommonFlags) => ({ migrationsDir: flags.migrationsDir, lockTimeoutMs: flags.lockTimeout });

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
(parallel CI jobs) wait on an advisory lock and apply each migration exactly once.

Examples:
  $ lmsctl migrate                                  apply everything pending
  $ lmsctl migrate up --to 5 --dry-run              show what would be applied up to 0005
  $ lmsctl migrate status --json                    machine-readable state of every migration
  $ lmsctl migrate validate                         exit 3 if an applied file was edited
  $ lmsctl migrate --require-backup 24h            refuse without a verified backup from the last day
  $ lmsctl migrate create add_course_tags           write the next NNNN_add_course_tags.sql
  $ lmsctl migrate down --steps 2 --yes             revert the two newest migrations`,
    );

  withCommonOptions(
    migrate
      .command('up', { isDefault: true })
      .description('apply pending migrations in order (the default)')
      .addHelpText(
        'after',
        examples(
          'lmsctl migrate up --dry-run',
          'lmsctl migrate up --to 7 --create-database',
          'lmsctl migrate up --require-backup 24h --lock-timeout 2m',
        ),
      )
      // As the default subcommand, `up` receives any mistyped subcommand name; say so clearly.
      .argument('[unknown...]')
      .usage('[options]')
      .option('--to <version>', 'stop after this version', integerAtLeast(1))
      .option('--dry-run', 'list what would be applied; change nothing')
      .option('--create-database', 'create the database first when it does not exist')
      .option(
        '--require-backup <max-age>',
        'refuse unless a verified backup of this database is younger (e.g. 24h)',
        durationMs,
      ),
  ).action(
    action(
      runtime,
      async (
        ctx,
        unknown: string[],
        flags: CommonFlags & { to?: number; dryRun?: boolean; createDatabase?: boolean; requireBackup?: number },
      ) => {
        if (unknown.length > 0) {
          throw usageError(
            `unknown migrate command "${unknown[0]}"`,
            `the migrate commands are: ${migrate.commands.map((command) => command.name()).join(', ')}`,
          );
        }
        const { migrateUp, renderMigrateUp } = await import('../commands/migrate.js');
        const result = await migrateUp(ctx, {
          ...common(flags),
          to: flags.to,
          dryRun: flags.dryRun,
          createDatabase: flags.createDatabase,
          requireBackupMs: flags.requireBackup,
        });
        ctx.out.result(result, renderMigrateUp);
      },
    ),
  );

  withCommonOptions(
    migrate
      .command('status')
      .description('list every migration: applied, pending, changed or missing')
      .addHelpText(
        'after',
        examples('lmsctl migrate status', 'lmsctl migrate status --json | jq \'.[] | select(.state != "applied")\''),
      ),
  ).action(
    action(runtime, async (ctx, flags: CommonFlags) => {
      const { migrateStatus, renderMigrateStatus } = await import('../commands/migrate.js');
      ctx.out.result(await migrateStatus(ctx, common(flags)), renderMigrateStatus);
    }),
  );

  withCommonOptions(
    migrate
      .command('validate')
      .description('check applied migrations against their files (exit 3 on any difference)')
      .addHelpText('after', examples('lmsctl migrate validate --database-url postgres://lms@db:5432/lms')),
  ).action(
    action(runtime, async (ctx, flags: CommonFlags) => {
      const { migrateValidate, renderMigrateValidate } = await import('../commands/migrate.js');
      ctx.out.result(await migrateValidate(ctx, common(flags)), renderMigrateValidate);
    }),
  );

  migrate
    .command('create')
    .description('write the next-numbered, empty migration file')
    .addHelpText('after', examples('lmsctl migrate create add_course_tags'))
    .argument('<name>', 'what the migration does, e.g. add_course_tags')
    .addOption(new Option('--migrations-dir <dir>', 'folder to write into').env('LMS_MIGRATIONS_DIR'))
    .action(
      action(runtime, async (ctx, name: string, flags: Pick<CommonFlags, 'migrationsDir'>) => {
        const { migrateCreate, renderMigrateCreate } = await import('../commands/migrate.js');
        ctx.out.result(await migrateCreate(ctx, name, { migrationsDir: flags.migrationsDir }), renderMigrateCreate);
      }),
    );

  withCommonOptions(
    migrate
      .command('down')
      .description('revert the newest migrations through their down sections (asks first)')
      .addHelpText('after', examples('lmsctl migrate down', 'lmsctl migrate down --steps 2 --yes'))
      .option('--steps <n>', 'how many migrations to revert', integerAtLeast(1), 1),
  ).action(
    action(runtime, async (ctx, flags: CommonFlags & { steps: number }) => {
      const { migrateDown, renderMigrateDown } = await import('../commands/migrate.js');
      ctx.out.result(await migrateDown(ctx, { ...common(flags), steps: flags.steps }), renderMigrateDown);
    }),
  );
}
