import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import cron from 'node-cron';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@lms/core/testing';
import { parseCron } from '../../lib/cron.js';
import { testContext } from '../../testing/context.js';
import { repoRoot, runLmsctl } from '../../testing/run-cli.js';
import { onCalendar, scheduleInstall, spliceCrontab, type ScheduleInstallResult } from './install.js';

let work: string;
let envFile: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-install-'));
  envFile = path.join(work, 'lms.env');
  await writeFile(envFile, 'DATABASE_URL=postgres://lms@db:5432/lms\n');
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const EXPRESSIONS = [
  '0 2 * * *',
  '0 3 * * 0',
  '*/15 * * * *',
  '30 1,13 * * mon-fri',
  '0 4 1,15 * *',
  '0 5 * 1,7 *',
  '5-20/5 8-17 * * *',
  '45 23 * * 6,7',
];
const BASE = new Date('2026-03-05T10:07:00');

/** The reference: node-cron's own matcher, minute by minute (what `schedule run` follows). */
function expectedRuns(expression: string, count: number, from = BASE): string[] {
  const task = cron.createTask(expression, () => undefined);
  const runs: string[] = [];
  const cursor = new Date(from);
  cursor.setSeconds(0, 0);
  for (let minutes = 0; runs.length < count && minutes < 60 * 24 * 400; minutes++) {
    cursor.setMinutes(cursor.getMinutes() + 1);
    if (task.match(cursor)) runs.push(localStamp(cursor));
  }
  void task.destroy();
  return runs;
}

function localStamp(date: Date): string {
  const pad = (value: number) => String(value).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/**
 * What every entry starts: node by its absolute path, `--` so that Node leaves `--env-file` to
 * lmsctl, and the repository's bin/lmsctl.js. No path inside node_modules, whose versioned
 * folders (node_modules/.pnpm/tsx@…) the next `pnpm install` replaces.
 */
const lmsctlEntry = [process.execPath, '--', path.join(repoRoot, 'packages', 'lmsctl', 'bin', 'lmsctl.js')];

async function install(options: Parameters<typeof scheduleInstall>[1]): Promise<ScheduleInstallResult> {
  const { ctx } = testContext({ cwd: work, env: {} });
  return scheduleInstall({ ...ctx, envFile }, options);
}

describe('schedule install --platform cron', () => {
  it('emits crontab lines that parse to the same schedule and run lmsctl by absolute paths', async () => {
    const result = await install({ platform: 'cron', backup: '30 1 * * *', pruneKeep: 7 });
    const block = result.entries[0]!.content;
    const jobs = block.split('\n').filter((line) => line && !line.startsWith('#'));
    expect(jobs).toHaveLength(2);
    for (const [line, expression] of [
      [jobs[0]!, '30 1 * * *'],
      [jobs[1]!, '0 3 * * 0'],
    ] as const) {
      const fields = line.split(' ').slice(0, 5).join(' ');
      expect(parseCron(fields, 'line', { allowSeconds: false })).toEqual(
        parseCron(expression, 'line', { allowSeconds: false }),
      );
      const command = line.split(' ').slice(5).join(' ');
      expect(command.startsWith(`cd ${work} && ${lmsctlEntry.join(' ')} --env-file ${envFile} `)).toBe(true);
      expect(command).not.toContain('node_modules');
    }
    expect(jobs[0]).toMatch(/ backup && .* backup prune --keep 7 --yes$/);
    expect(jobs[1]).toMatch(/ drill$/);
  });

  it('--write keeps the rest of the crontab, replaces its own block, and --uninstall removes it', async () => {
    const bin = await mkdtemp(path.join(work, 'bin-'));
    const store = path.join(bin, 'crontab.txt');
    await writeFile(
      path.join(bin, 'crontab'),
      `#!/bin/sh\nif [ "$1" = "-l" ]; then [ -f "${store}" ] || { echo "no crontab for $USER" >&2; exit 1; }; cat "${store}"; else cat > "${store}"; fi\n`,
    );
    await chmod(path.join(bin, 'crontab'), 0o755);
    const env = { PATH: `${bin}:${process.env.PATH}` };
    const args = ['schedule', 'install', '--platform', 'cron', '--env-file', envFile];

    expect((await runLmsctl([...args, '--write'], { env, cwd: work })).exitCode).toBe(0);
    const first = await readFile(store, 'utf8');
    expect(first.match(/# BEGIN lmsctl lms/g)).toHaveLength(1);

    await writeFile(store, `MAILTO=ops@example.com\n0 1 * * * /usr/local/bin/other-job\n${first}`);
    expect((await runLmsctl([...args, '--write', '--backup', '15 4 * * *'], { env, cwd: work })).exitCode).toBe(0);
    const second = await readFile(store, 'utf8');
    expect(second.match(/# BEGIN lmsctl lms/g)).toHaveLength(1);
    expect(second).toContain('0 1 * * * /usr/local/bin/other-job');
    expect(second).toMatch(/^15 4 \* \* \* cd /m);

    const refused = await runLmsctl([...args, '--uninstall'], { env, cwd: work });
    expect(refused.exitCode).toBe(2);
    expect((await runLmsctl([...args, '--uninstall', '--yes'], { env, cwd: work })).exitCode).toBe(0);
    expect(await readFile(store, 'utf8')).toBe('MAILTO=ops@example.com\n0 1 * * * /usr/local/bin/other-job\n');
  });

  it('splices blocks without touching other lines', () => {
    const block = '# BEGIN lmsctl lms x\n1 2 * * * a\n# END lmsctl lms\n';
    expect(spliceCrontab('', 'lms', block)).toBe(block);
    expect(spliceCrontab(`x\n${block}y\n`, 'lms', null)).toBe('x\ny\n');
  });
});

describe('schedule install: the written entries run', () => {
  let database: TestDatabase;

  beforeAll(async () => {
    database = await createTestDatabase('schedule_install');
  });

  afterAll(async () => {
    await database.drop();
  });

  it('the crontab backup line runs as cron runs it: /bin/sh, a bare PATH, nothing from pnpm', async () => {
    // The line names only node and the repository's bin/lmsctl.js, which finds tsx and the
    // dependencies when it runs; a later `pnpm install` changes neither (asserted above).
    const backups = path.join(work, 'cron-backups');
    const cronEnv = path.join(work, 'cron.env');
    await writeFile(cronEnv, `DATABASE_URL=${database.url}\nLMS_BACKUP_DIR=${backups}\n`);
    const migrated = await runLmsctl(['migrate', '--env-file', cronEnv], { cwd: work });
    expect(migrated.exitCode, migrated.stderr).toBe(0);
    const printed = await runLmsctl(
      ['schedule', 'install', '--platform', 'cron', '--env-file', cronEnv, '--prune-keep', '1', '--json'],
      { cwd: work },
    );
    expect(printed.exitCode, printed.stderr).toBe(0);
    const block = (JSON.parse(printed.stdout) as ScheduleInstallResult).entries[0]!.content;
    const line = block.split('\n').find((candidate) => candidate.startsWith('0 2 * * * '))!;
    // cron hands the rest of the line, with \% unescaped, to /bin/sh -c, from the home folder.
    const command = line.slice('0 2 * * * '.length).replace(/\\%/g, '%');
    const ran = await execa('/bin/sh', ['-c', command], {
      reject: false,
      extendEnv: false,
      env: { PATH: '/usr/bin:/bin', HOME: os.homedir(), SHELL: '/bin/sh' },
      cwd: os.homedir(),
    });
    expect(ran.exitCode, ran.stderr).toBe(0);
    expect(await readdir(backups)).toContainEqual(expect.stringMatching(/^lms_\d{8}_\d{6}\.dump$/));
  });
});

describe('schedule install --platform systemd', () => {
  it('writes units that systemd-analyze verify accepts', async () => {
    const result = await install({ platform: 'systemd', pruneKeep: 3 });
    const dir = await mkdtemp(path.join(work, 'units-'));
    for (const entry of result.entries) await writeFile(path.join(dir, entry.name), entry.content);
    expect(result.entries.map((entry) => entry.name)).toEqual([
      'lms-backup.service',
      'lms-backup.timer',
      'lms-drill.service',
      'lms-drill.timer',
    ]);
    const verify = await execa(
      'systemd-analyze',
      ['verify', ...result.entries.map((entry) => path.join(dir, entry.name))],
      { reject: false },
    );
    expect(verify.exitCode, `${verify.stdout}${verify.stderr}`).toBe(0);
    expect(verify.stderr).toBe('');
    const service = result.entries[0]!.content;
    expect(service).toContain(`WorkingDirectory=${work}`);
    expect(service.match(/^ExecStart=.*$/gm)).toEqual([
      `ExecStart=${lmsctlEntry.join(' ')} --env-file ${envFile} backup`,
      `ExecStart=${lmsctlEntry.join(' ')} --env-file ${envFile} backup prune --keep 3 --yes`,
    ]);
    expect(result.entries.map((entry) => entry.content).join('')).not.toContain('node_modules');
  });

  it.each(EXPRESSIONS)('OnCalendar for "%s" fires at the same times as the cron expression', async (expression) => {
    const calendar = onCalendar(parseCron(expression, 'test', { allowSeconds: false }));
    const { stdout } = await execa(
      'systemd-analyze',
      ['calendar', '--iterations=8', `--base-time=@${BASE.getTime() / 1000}`, calendar],
      {
        env: { ...process.env, TZ: Intl.DateTimeFormat().resolvedOptions().timeZone },
      },
    );
    const fired = [...stdout.matchAll(/(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d{2}-\d{2} \d{2}:\d{2}):00/g)].map(
      (match) => match[1],
    );
    expect(fired).toEqual(expectedRuns(expression, 8));
  });
});

interface CalendarTrigger {
  StartBoundary: string;
  ScheduleByDay?: unknown;
  ScheduleByWeek?: { DaysOfWeek: Record<string, string> };
  ScheduleByMonth?: { DaysOfMonth: { Day: number[] }; Months: Record<string, string> };
  Repetition?: { Interval: string };
}

interface TaskXml {
  Task: {
    RegistrationInfo: { URI: string };
    Triggers: { CalendarTrigger: CalendarTrigger[] };
    Actions: { Exec: { Command: string; Arguments: string; WorkingDirectory: string } };
    Settings: { MultipleInstancesPolicy: string };
  };
}

/** Task Scheduler's calendar triggers, interpreted independently of the code that wrote them. */
function windowsRuns(xml: string, count: number, from = BASE): string[] {
  const parsed = new XMLParser({
    ignoreAttributes: false,
    isArray: (name) => ['CalendarTrigger', 'Day'].includes(name),
  }).parse(xml) as TaskXml;
  const MONTHS = [
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
  const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
  const fires = (trigger: CalendarTrigger, at: Date): boolean => {
    const [hour, minute] = String(trigger.StartBoundary).slice(11, 16).split(':').map(Number) as [number, number];
    const dayOk = trigger.ScheduleByDay
      ? true
      : trigger.ScheduleByWeek
        ? DAYS[at.getDay()]! in trigger.ScheduleByWeek.DaysOfWeek
        : trigger.ScheduleByMonth!.DaysOfMonth.Day.includes(at.getDate()) &&
          MONTHS[at.getMonth()]! in trigger.ScheduleByMonth!.Months;
    if (!dayOk) return false;
    const sinceStart = (at.getHours() - hour) * 60 + at.getMinutes() - minute;
    if (!trigger.Repetition) return sinceStart === 0;
    const interval = Number(/PT(\d+)M/.exec(String(trigger.Repetition.Interval))![1]);
    return sinceStart >= 0 && sinceStart % interval === 0;
  };
  const runs: string[] = [];
  const cursor = new Date(from);
  cursor.setSeconds(0, 0);
  for (let minutes = 0; runs.length < count && minutes < 60 * 24 * 400; minutes++) {
    cursor.setMinutes(cursor.getMinutes() + 1);
    if (parsed.Task.Triggers.CalendarTrigger.some((trigger) => fires(trigger, cursor))) runs.push(localStamp(cursor));
  }
  return runs;
}

describe('schedule install --platform windows', () => {
  it('emits well-formed task XML that names the task and runs lmsctl by absolute paths', async () => {
    const result = await install({ platform: 'windows' });
    expect(result.entries.map((entry) => entry.name)).toEqual(['\\LMS\\lms-backup', '\\LMS\\lms-drill']);
    for (const entry of result.entries) {
      expect(XMLValidator.validate(entry.content)).toBe(true);
      const task = new XMLParser().parse(entry.content) as TaskXml;
      expect(task.Task.RegistrationInfo.URI).toBe(entry.name);
      expect(task.Task.Actions.Exec.Command).toBe(process.execPath);
      expect(task.Task.Actions.Exec.Arguments).toBe(
        `${lmsctlEntry.slice(1).join(' ')} --env-file ${envFile} ${entry.name.endsWith('backup') ? 'backup' : 'drill'}`,
      );
      expect(task.Task.Actions.Exec.WorkingDirectory).toBe(work);
      expect(task.Task.Settings.MultipleInstancesPolicy).toBe('IgnoreNew');
    }
    expect(result.commands).toEqual([
      'schtasks /Create /TN "LMS\\lms-backup" /XML "lms-backup.xml" /F',
      'schtasks /Create /TN "LMS\\lms-drill" /XML "lms-drill.xml" /F',
    ]);
  });

  it.each(EXPRESSIONS)('triggers for "%s" fire at the same times as the cron expression', async (expression) => {
    const result = await install({ platform: 'windows', backup: expression });
    expect(windowsRuns(result.entries[0]!.content, 8)).toEqual(expectedRuns(expression, 8));
  });

  it('refuses --write outside Windows and schedules Task Scheduler cannot express', async () => {
    await expect(install({ platform: 'windows', write: true })).rejects.toMatchObject({ exitCode: 2 });
    await expect(install({ platform: 'windows', backup: '*/7 * * * *' })).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringContaining('which Windows Task Scheduler cannot express'),
    });
  });
});

describe('cron expressions', () => {
  it('are refused with the reason when invalid or not portable', async () => {
    const run = async (expression: string) =>
      (await runLmsctl(['schedule', 'install', '--platform', 'cron', '--backup', expression], { cwd: work })).stderr;
    expect(await run('61 * * * *')).toContain('--backup "61 * * * *": minute: 61 is a invalid expression for minute');
    expect(await run('0 2 1 * mon')).toContain('restricts both day of month and day of week');
    expect(await run('0 0 2 * * *')).toContain('6 fields (with seconds) only work for `schedule run`');
    expect(await run('0 2 L * *')).toContain('L, W, # and ? are not understood by crontab');
    expect(await run('every day')).toContain('expected 5 or 6 fields');
  });
});
