import { Option, type Command } from 'commander';
import type { ScheduleInstallOptions } from '../commands/schedule/install.js';
import type { ScheduleRunOptions } from '../commands/schedule/run.js';
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
${examples(
  { cmd: 'lmsctl schedule run --prune-keep 14', notRunHere: 'runs until stopped' },
  { cmd: 'lmsctl schedule install --platform systemd --prune-keep 14', exits: 0 },
  {
    cmd: 'lmsctl schedule install --platform cron --backup "30 1 * * *" --write',
    notRunHere: "changes this machine's crontab",
  },
  { cmd: 'lmsctl schedule install --platform windows > tasks.xml', exits: 0 },
)}`,
    );

  schedule
    .command('run')
    .description('stay running and take backups and drills on their schedules (no overlapping runs)')
    .addHelpText(
      'after',
      examples(
        { cmd: 'lmsctl schedule run', notRunHere: 'runs until stopped' },
        {
          cmd: 'lmsctl schedule run --backup "0 */6 * * *" --drill "0 4 * * 0" --prune-keep 28 --encrypt',
          notRunHere: 'runs until stopped',
        },
      ),
    )
    .option('--backup <cron>', 'backup schedule', '0 2 * * *')
    .option('--drill <cron>', 'drill schedule', '0 3 * * 0')
    .option('--prune-keep <n>', 'after each backup, keep this many backups', integerAtLeast(1))
    .option('--encrypt', 'encrypt the backups (LMS_BACKUP_KEY_FILE)')
    .action(
      action(runtime, async (ctx, flags: ScheduleRunOptions) => {
        const { scheduleRun, renderScheduleRun } = await import('../commands/schedule/run.js');
        const result = await scheduleRun(ctx, flags);
        // With --json every event was already a JSON line on stdout.
        if (!ctx.json) ctx.out.result(result, renderScheduleRun);
      }),
    );

  schedule
    .command('install')
    .description('print (or --write) crontab, systemd timer or Windows Task Scheduler entries for backups and drills')
    .addHelpText(
      'after',
      `
Without --write or --uninstall it only prints the entries and the commands that install them.
--uninstall removes the entries of that --name and needs no --write; it asks first.
${examples(
  { cmd: 'lmsctl schedule install --platform systemd', note: 'print the units', exits: 0 },
  {
    cmd: 'lmsctl schedule install --platform systemd --write',
    note: 'install and enable them',
    notRunHere: 'installs systemd timers on this machine',
  },
  {
    cmd: 'lmsctl schedule install --platform cron --backup "30 1 * * *" --write',
    note: "install or replace lmsctl's crontab block",
    notRunHere: "changes this machine's crontab",
  },
  {
    cmd: 'lmsctl schedule install --platform cron --uninstall --yes',
    note: "remove lmsctl's crontab block",
    notRunHere: "changes this machine's crontab",
  },
)}`,
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
    .option('--uninstall', 'remove the entries this command installed (asks first)')
    .action(
      action(runtime, async (ctx, flags: ScheduleInstallOptions) => {
        const { scheduleInstall, renderScheduleInstall } = await import('../commands/schedule/install.js');
        const result = await scheduleInstall(ctx, flags);
        ctx.out.result(result, renderScheduleInstall);
      }),
    );
}
