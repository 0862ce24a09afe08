import { Option, type Command } from 'commander';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { integerAtLeast } from './parsers.js';

/** `lmsctl schedule run|install` */
export function registerSchedule(program: Command, runtime: Runtime): void {
  const schedule = program
    .command('schedule')
    .description('run backups and drills on cron schedules, or install them into cron, systemd or Task Scheduler')
    .addHelpText(
      'after',
      `
Cron expressions have 5 fields (minute hour day-of-month month day-of-week) in this machine's
local time and mean the same times under every scheduler; \`schedule run\` also takes a 6th,
leading seconds field. Defaults: backups "0 2 * * *" (daily 02:00), drills "0 3 * * 0" (Sundays 03:00).

Examples:
  $ lmsctl schedule run --prune-keep 14
  $ lmsctl schedule install --platform systemd --prune-keep 14
  $ lmsctl schedule install --platform cron --backup "30 1 * * *" --write
  $ lmsctl schedule install --platform windows > tasks.xml`,
    );

  schedule
    .command('run')
    .description('stay running and take backups and drills on their schedules (no overlapping runs)')
    .addHelpText(
      'after',
      examples(
        'lmsctl schedule run',
        'lmsctl schedule run --backup "0 */6 * * *" --drill "0 4 * * 0" --prune-keep 28 --encrypt',
      ),
    )
    .option('--backup <cron>', 'backup schedule', '0 2 * * *')
    .option('--drill <cron>', 'drill schedule', '0 3 * * 0')
    .option('--prune-keep <n>', 'after each backup, keep this many backups', integerAtLeast(1))
    .option('--encrypt', 'encrypt the backups (LMS_BACKUP_KEY_FILE)')
    .action(
      action(runtime, async (ctx, flags: { backup: string; drill: string; pruneKeep?: number; encrypt?: boolean }) => {
        const { scheduleRun, renderScheduleRun } = await import('../commands/schedule.js');
        const result = await scheduleRun(ctx, {
          backupCron: flags.backup,
          drillCron: flags.drill,
          pruneKeep: flags.pruneKeep,
          encrypt: flags.encrypt,
        });
        // With --json every event was already a JSON line on stdout.
        if (!ctx.json) ctx.out.result(result, renderScheduleRun);
      }),
    );

  schedule
    .command('install')
    .description('print (or --write) crontab, systemd timer or Windows Task Scheduler entries for backups and drills')
    .addHelpText(
      'after',
      examples(
        'lmsctl schedule install --platform systemd',
        'lmsctl schedule install --platform cron --backup "30 1 * * *" --write',
        'lmsctl schedule install --platform cron --uninstall --write',
      ),
    )
    .addOption(
      new Option('--platform <platform>', 'the OS scheduler')
        .choices(['cron', 'systemd', 'windows'])
        .makeOptionMandatory(),
    )
    .option('--backup <cron>', 'backup schedule', '0 2 * * *')
    .option('--drill <cron>', 'drill schedule', '0 3 * * 0')
    .option('--prune-keep <n>', 'after each backup, keep this many backups', integerAtLeast(1))
    .option('--name <prefix>', 'name prefix of the entries', 'lms')
    .option('--write', 'install the entries (crontab, systemctl enable, schtasks) instead of printing them')
    .option('--uninstall', 'remove the entries this command installed')
    .action(
      action(
        runtime,
        async (
          ctx,
          flags: {
            platform: 'cron' | 'systemd' | 'windows';
            backup: string;
            drill: string;
            pruneKeep?: number;
            name: string;
            write?: boolean;
            uninstall?: boolean;
          },
        ) => {
          const { scheduleInstall, renderScheduleInstall } = await import('../commands/schedule-install.js');
          const result = await scheduleInstall(ctx, {
            platform: flags.platform,
            backupCron: flags.backup,
            drillCron: flags.drill,
            pruneKeep: flags.pruneKeep,
            name: flags.name,
            write: flags.write,
            uninstall: flags.uninstall,
          });
          ctx.out.result(result, renderScheduleInstall);
        },
      ),
    );
}
