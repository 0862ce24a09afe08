import { mkdir, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChalkInstance } from 'chalk';
import { execa } from 'execa';
import type { CommandContext } from '../../context.js';
import { CliError, ExitCode, usageError } from '../../errors.js';
import { parseCron, type CronSchedule } from '../../lib/cron.js';
import { confirmOrRefuse } from '../../lib/confirm.js';
import { DEFAULT_BACKUP_CRON, DEFAULT_DRILL_CRON } from '../../lib/cron.js';

export type Platform = 'cron' | 'systemd' | 'windows';

export interface ScheduleInstallOptions {
  platform: Platform;
  /** When to back up: a cron expression (`--backup`). */
  backup?: string;
  /** When to drill: a cron expression (`--drill`). */
  drill?: string;
  pruneKeep?: number;
  /** Name prefix of the entries (crontab block, units, tasks). */
  name?: string;
  /** Install (or remove) instead of printing. */
  write?: boolean;
  uninstall?: boolean;
}

/** One scheduled job: when, and the command lines it runs in order. */
interface Job {
  kind: 'backup' | 'drill';
  id: string;
  description: string;
  schedule: CronSchedule;
  commands: string[][];
}

export interface InstallEntry {
  /** What the entry is: the crontab block, a unit file, a task XML. */
  name: string;
  /** Where --write puts it (null for the crontab, which is installed through `crontab`). */
  path: string | null;
  content: string;
}

export interface ScheduleInstallResult {
  platform: Platform;
  action: 'print' | 'install' | 'uninstall';
  entries: InstallEntry[];
  /** Commands that install (or were run to install) the entries. */
  commands: string[];
  notes: string[];
}

/**
 * How a scheduler starts this lmsctl: absolute node, `--` (Node 20 would otherwise read the
 * `--env-file` that follows as its own), and the package's bin/lmsctl.js, which runs the sources
 * in the repository and dist/ where the package is installed. Neither lies in node_modules, whose
 * versioned folders the next `pnpm install` replaces: the bin finds tsx and the dependencies when
 * it runs.
 */
export function lmsctlInvocation(): string[] {
  return [process.execPath, '--', fileURLToPath(new URL('../../../bin/lmsctl.js', import.meta.url))];
}

function jobsOf(ctx: CommandContext, options: ScheduleInstallOptions): Job[] {
  const prefix = options.name ?? 'lms';
  if (!/^[a-z][a-z0-9-]{0,30}$/.test(prefix))
    throw usageError(`--name "${prefix}": use lower-case letters, digits and -`);
  const base = [...lmsctlInvocation(), ...(ctx.envFile ? ['--env-file', ctx.envFile] : [])];
  const backup: string[][] = [[...base, 'backup']];
  if (options.pruneKeep) backup.push([...base, 'backup', 'prune', '--keep', String(options.pruneKeep), '--yes']);
  return [
    {
      kind: 'backup',
      id: `${prefix}-backup`,
      description: `LMS database backup (lmsctl)${options.pruneKeep ? `, keeping ${options.pruneKeep}` : ''}`,
      schedule: parseCron(options.backup ?? DEFAULT_BACKUP_CRON, '--backup', { allowSeconds: false }),
      commands: backup,
    },
    {
      kind: 'drill',
      id: `${prefix}-drill`,
      description: 'LMS restore drill (lmsctl)',
      schedule: parseCron(options.drill ?? DEFAULT_DRILL_CRON, '--drill', { allowSeconds: false }),
      commands: [[...base, 'drill']],
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// crontab

const shellQuote = (arg: string) => (/^[A-Za-z0-9_./:=@%+-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`);

function cronBlockMarkers(prefix: string): { begin: string; end: string } {
  return { begin: `# BEGIN lmsctl ${prefix}`, end: `# END lmsctl ${prefix}` };
}

export function renderCrontabBlock(ctx: CommandContext, jobs: Job[], prefix: string): string {
  const { begin, end } = cronBlockMarkers(prefix);
  const lines = [
    `${begin} (written by \`lmsctl schedule install\`; changes inside this block are replaced)`,
    "# Times are this machine's local time; output goes to cron's mail unless redirected.",
  ];
  for (const job of jobs) {
    // % ends the command in a crontab line: escape it.
    const command = [`cd ${shellQuote(ctx.cwd)}`, ...job.commands.map((argv) => argv.map(shellQuote).join(' '))]
      .join(' && ')
      .replace(/%/g, '\\%');
    lines.push(`# ${job.description}`, `${job.schedule.expression} ${command}`);
  }
  lines.push(end);
  return `${lines.join('\n')}\n`;
}

/** Replaces (or removes, with block null) the marked block in a crontab, keeping everything else. */
export function spliceCrontab(current: string, prefix: string, block: string | null): string {
  const { begin, end } = cronBlockMarkers(prefix);
  const lines = current.split('\n');
  const start = lines.findIndex((line) => line.startsWith(begin));
  const stop = lines.findIndex((line, index) => index > start && line.startsWith(end));
  const kept = start === -1 || stop === -1 ? lines : [...lines.slice(0, start), ...lines.slice(stop + 1)];
  const body = kept.join('\n').replace(/\n+$/, '');
  const parts = [body, block?.replace(/\n$/, '')].filter((part) => part);
  return parts.length ? `${parts.join('\n')}\n` : '';
}

async function readCrontab(): Promise<string> {
  const result = await execa('crontab', ['-l'], { reject: false });
  if (result.failed && (result as { code?: string }).code === 'ENOENT') {
    throw new CliError(
      ExitCode.failed,
      'crontab not found: install cron (Debian: apt install cron) or use --platform systemd',
    );
  }
  // "no crontab for user" is an empty crontab, not an error.
  return result.exitCode === 0 ? result.stdout : '';
}

// ---------------------------------------------------------------------------------------------
// systemd

/** Compresses a field's values for OnCalendar: `*`, `00/15`, or a list. */
function calendarField(values: number[], full: number[], pad: number): string {
  const fmt = (value: number) => String(value).padStart(pad, '0');
  if (values.length === full.length) return '*';
  if (values.length > 2) {
    const step = values[1]! - values[0]!;
    const regular = values.every((value, index) => value === values[0]! + index * step);
    if (regular && values.at(-1)! + step > full.at(-1)!) return `${fmt(values[0]!)}/${step}`;
  }
  return values.map(fmt).join(',');
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, index) => from + index);
const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

/** The systemd OnCalendar expression for a cron schedule (local time, like cron). */
export function onCalendar(schedule: CronSchedule): string {
  const days = schedule.daysOfWeek ? `${schedule.daysOfWeek.map((day) => DAY_NAMES[day]).join(',')} ` : '';
  const months = schedule.months ? calendarField(schedule.months, range(1, 12), 2) : '*';
  const dom = schedule.daysOfMonth ? calendarField(schedule.daysOfMonth, range(1, 31), 2) : '*';
  const hours = calendarField(schedule.hours, range(0, 23), 2);
  const minutes = calendarField(schedule.minutes, range(0, 59), 2);
  return `${days}*-${months}-${dom} ${hours}:${minutes}:00`;
}

/** systemd's quoting: double quotes, backslash escapes, and % and $ doubled (specifiers, variables). */
const systemdQuote = (arg: string) => {
  const escaped = arg.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /^[A-Za-z0-9_./:=@+-]+$/.test(escaped) ? escaped : `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
};

export function renderSystemdUnits(ctx: CommandContext, job: Job): { service: string; timer: string } {
  const service = [
    '[Unit]',
    `Description=${job.description}`,
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=oneshot',
    `WorkingDirectory=${systemdQuote(ctx.cwd)}`,
    ...job.commands.map((argv) => `ExecStart=${argv.map(systemdQuote).join(' ')}`),
    'NoNewPrivileges=yes',
    'PrivateTmp=yes',
    '',
  ].join('\n');
  const timer = [
    '[Unit]',
    `Description=Schedule of ${job.id}.service (cron "${job.schedule.expression}")`,
    '',
    '[Timer]',
    `OnCalendar=${onCalendar(job.schedule)}`,
    `Unit=${job.id}.service`,
    '',
    '[Install]',
    'WantedBy=timers.target',
    '',
  ].join('\n');
  return { service, timer };
}

function systemdDir(): { dir: string; user: boolean } {
  const root = process.getuid?.() === 0;
  return root
    ? { dir: '/etc/systemd/system', user: false }
    : { dir: path.join(os.homedir(), '.config', 'systemd', 'user'), user: true };
}

// ---------------------------------------------------------------------------------------------
// Windows Task Scheduler

const xmlEscape = (text: string) =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
/** Windows command-line quoting for CreateProcess (what Task Scheduler's Arguments are parsed with). */
const windowsQuote = (arg: string) =>
  /^[A-Za-z0-9_.:\\/=@+-]+$/.test(arg) ? arg : `"${arg.replace(/(\\*)"/g, '$1$1\\"').replace(/(\\+)$/, '$1$1')}"`;
const MONTH_NAMES = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];
const WEEKDAY_NAMES = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
/** Task Scheduler accepts at most 48 triggers per task. */
const MAX_TRIGGERS = 48;

function windowsDaySchedule(schedule: CronSchedule): string {
  if (schedule.daysOfWeek) {
    return `<ScheduleByWeek><WeeksInterval>1</WeeksInterval><DaysOfWeek>${schedule.daysOfWeek.map((day) => `<${WEEKDAY_NAMES[day]} />`).join('')}</DaysOfWeek></ScheduleByWeek>`;
  }
  if (schedule.daysOfMonth || schedule.months) {
    const days = schedule.daysOfMonth ?? range(1, 31);
    const months = schedule.months ?? range(1, 12);
    return `<ScheduleByMonth><DaysOfMonth>${days.map((day) => `<Day>${day}</Day>`).join('')}</DaysOfMonth><Months>${months.map((month) => `<${MONTH_NAMES[month - 1]} />`).join('')}</Months></ScheduleByMonth>`;
  }
  return '<ScheduleByDay><DaysInterval>1</DaysInterval></ScheduleByDay>';
}

/**
 * Calendar triggers for a cron schedule: one per time of day (up to 48), or one at midnight
 * repeating every N minutes when the expression is "every N minutes" all day.
 */
function windowsTriggers(schedule: CronSchedule, option: string): string[] {
  const days = windowsDaySchedule(schedule);
  const trigger = (time: string, repetition = '') =>
    `<CalendarTrigger>${repetition}<StartBoundary>2000-01-01T${time}</StartBoundary><Enabled>true</Enabled>${days}</CalendarTrigger>`;
  const step = schedule.minutes.length > 1 ? schedule.minutes[1]! - schedule.minutes[0]! : 60;
  const everyFewMinutes =
    schedule.hours.length === 24 &&
    schedule.minutes[0] === 0 &&
    60 % step === 0 &&
    schedule.minutes.length === 60 / step &&
    schedule.minutes.every((minute, index) => minute === index * step);
  if (everyFewMinutes && schedule.minutes.length > 1) {
    return [
      trigger(
        '00:00:00',
        `<Repetition><Interval>PT${step}M</Interval><Duration>P1D</Duration><StopAtDurationEnd>false</StopAtDurationEnd></Repetition>`,
      ),
    ];
  }
  const times = schedule.hours.flatMap((hour) =>
    schedule.minutes.map((minute) => `${String(hour).padStart(2, '0')}:${String(minute).padStart(2, '0')}:00`),
  );
  if (times.length > MAX_TRIGGERS) {
    throw usageError(
      `${option} "${schedule.expression}": runs at ${times.length} times a day, which Windows Task Scheduler cannot express`,
      `use at most ${MAX_TRIGGERS} times a day, or every N minutes around the clock (*/N with N dividing 60)`,
    );
  }
  return times.map((time) => trigger(time));
}

export function renderWindowsTask(ctx: CommandContext, job: Job, option: string): string {
  const actions = job.commands
    .map(
      ([command, ...args]) =>
        `    <Exec>\n      <Command>${xmlEscape(command!)}</Command>\n      <Arguments>${xmlEscape(args.map(windowsQuote).join(' '))}</Arguments>\n      <WorkingDirectory>${xmlEscape(ctx.cwd)}</WorkingDirectory>\n    </Exec>`,
    )
    .join('\n');
  return [
    '<?xml version="1.0" encoding="UTF-16"?>',
    '<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">',
    '  <RegistrationInfo>',
    `    <Description>${xmlEscape(`${job.description}; cron "${job.schedule.expression}"`)}</Description>`,
    `    <URI>\\LMS\\${job.id}</URI>`,
    '  </RegistrationInfo>',
    '  <Triggers>',
    ...windowsTriggers(job.schedule, option).map((trigger) => `    ${trigger}`),
    '  </Triggers>',
    '  <Principals>',
    '    <Principal id="Author">',
    '      <LogonType>S4U</LogonType>',
    '      <RunLevel>LeastPrivilege</RunLevel>',
    '    </Principal>',
    '  </Principals>',
    '  <Settings>',
    // Like the scheduler: a run never overlaps the previous one.
    '    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>',
    '    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>',
    '    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>',
    '    <ExecutionTimeLimit>PT12H</ExecutionTimeLimit>',
    '    <Enabled>true</Enabled>',
    '  </Settings>',
    '  <Actions Context="Author">',
    actions,
    '  </Actions>',
    '</Task>',
    '',
  ].join('\n');
}

/** Task Scheduler reads task XML as UTF-16 with a byte-order mark. */
function utf16(text: string): Buffer {
  return Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text.replace(/\n/g, '\r\n'), 'utf16le')]);
}

// ---------------------------------------------------------------------------------------------

/**
 * Emits (or with --write installs, with --uninstall removes) the OS scheduler entries that run
 * `lmsctl backup` and `lmsctl drill` with absolute paths, the working directory and the env
 * file of this invocation.
 */
export async function scheduleInstall(
  ctx: CommandContext,
  options: ScheduleInstallOptions,
): Promise<ScheduleInstallResult> {
  const prefix = options.name ?? 'lms';
  const jobs = jobsOf(ctx, options);
  const notes: string[] = [];
  if (!ctx.envFile)
    notes.push("no env file was found or given: the jobs see only the scheduler's environment (pass --env-file)");
  const action = options.uninstall ? 'uninstall' : options.write ? 'install' : 'print';

  if (options.platform === 'cron') {
    const block = renderCrontabBlock(ctx, jobs, prefix);
    const result: ScheduleInstallResult = {
      platform: 'cron',
      action,
      entries: [{ name: 'crontab block', path: null, content: block }],
      commands: ['crontab -e   (paste the block), or run again with --write'],
      notes,
    };
    if (action === 'print') return result;
    const current = await readCrontab();
    const next = spliceCrontab(current, prefix, action === 'install' ? block : null);
    if (action === 'uninstall') {
      await confirmOrRefuse(`Remove the lmsctl ${prefix} block from the crontab?`, {
        yes: ctx.yes,
        action: `remove the lmsctl ${prefix} crontab block`,
      });
    }
    await execa('crontab', ['-'], { input: next });
    result.commands = [
      'crontab -  (the current crontab with the block ' + (action === 'install' ? 'replaced)' : 'removed)'),
    ];
    return result;
  }

  if (options.platform === 'systemd') {
    const { dir, user } = systemdDir();
    const entries = jobs.flatMap((job) => {
      const units = renderSystemdUnits(ctx, job);
      return [
        { name: `${job.id}.service`, path: path.join(dir, `${job.id}.service`), content: units.service },
        { name: `${job.id}.timer`, path: path.join(dir, `${job.id}.timer`), content: units.timer },
      ];
    });
    const systemctl = ['systemctl', ...(user ? ['--user'] : [])];
    const timers = jobs.map((job) => `${job.id}.timer`);
    const commands =
      action === 'uninstall'
        ? [
            [...systemctl, 'disable', '--now', ...timers],
            [...systemctl, 'daemon-reload'],
          ]
        : [
            [...systemctl, 'daemon-reload'],
            [...systemctl, 'enable', '--now', ...timers],
          ];
    const result: ScheduleInstallResult = {
      platform: 'systemd',
      action,
      entries,
      commands: commands.map((argv) => argv.join(' ')),
      notes,
    };
    if (user) notes.push('user units run only while you are logged in unless lingering is on: loginctl enable-linger');
    if (action === 'print') {
      result.commands.unshift(`save the units into ${dir}`);
      return result;
    }
    if (action === 'uninstall') {
      await confirmOrRefuse(`Disable and remove ${timers.join(', ')}?`, {
        yes: ctx.yes,
        action: `remove the ${prefix} timers`,
      });
      await execa(commands[0]![0]!, commands[0]!.slice(1), { reject: false });
      for (const entry of entries) await unlink(entry.path).catch(() => undefined);
      await execa(commands[1]![0]!, commands[1]!.slice(1));
      return result;
    }
    await mkdir(dir, { recursive: true });
    for (const entry of entries) await writeFile(entry.path, entry.content);
    for (const argv of commands) await execa(argv[0]!, argv.slice(1));
    return result;
  }

  const entries = jobs.map((job) => ({
    name: `\\LMS\\${job.id}`,
    path: null,
    content: renderWindowsTask(ctx, job, job.kind === 'backup' ? '--backup' : '--drill'),
  }));
  const create = (job: Job, file: string) => `schtasks /Create /TN "LMS\\${job.id}" /XML "${file}" /F`;
  const result: ScheduleInstallResult = {
    platform: 'windows',
    action,
    entries,
    commands:
      action === 'uninstall'
        ? jobs.map((job) => `schtasks /Delete /TN "LMS\\${job.id}" /F`)
        : jobs.map((job) => create(job, `${job.id}.xml`)),
    notes,
  };
  if (action === 'print') return result;
  if (process.platform !== 'win32') {
    throw usageError(
      '--write and --uninstall for Windows run schtasks, which exists only on Windows',
      'run this on the Windows machine, or save the printed XML there and run the printed schtasks commands',
    );
  }
  if (action === 'uninstall') {
    await confirmOrRefuse(`Delete the scheduled tasks ${jobs.map((job) => job.id).join(', ')}?`, {
      yes: ctx.yes,
      action: 'delete the scheduled tasks',
    });
    for (const job of jobs) await execa('schtasks', ['/Delete', '/TN', `LMS\\${job.id}`, '/F']);
    return result;
  }
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-tasks-'));
  try {
    for (const [index, job] of jobs.entries()) {
      const file = path.join(scratch, `${job.id}.xml`);
      await writeFile(file, utf16(entries[index]!.content));
      await execa('schtasks', ['/Create', '/TN', `LMS\\${job.id}`, '/XML', file, '/F']);
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return result;
}

export function renderScheduleInstall(result: ScheduleInstallResult, style: ChalkInstance): string {
  const lines: string[] = [];
  if (result.action === 'print') {
    for (const entry of result.entries) {
      lines.push(style.dim(`# --- ${entry.name}${entry.path ? ` → ${entry.path}` : ''}`), entry.content.trimEnd(), '');
    }
    lines.push(style.dim('# then:'), ...result.commands.map((command) => style.dim(`#   ${command}`)));
  } else {
    lines.push(
      `${result.action === 'install' ? 'installed' : 'removed'} ${result.entries.map((entry) => entry.name).join(', ')}`,
    );
    lines.push(...result.commands.map((command) => `  ran: ${command}`));
  }
  for (const note of result.notes) lines.push(style.yellow(`note: ${note}`));
  return lines.join('\n');
}
