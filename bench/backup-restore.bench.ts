import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { connectClient, withDatabase } from '@lms/core';
import { DIRECTORY_DEFAULT_COMPRESS } from '../packages/lmsctl/src/backup/create.js';
import { BENCH_SCALE, benchServerUrl, databaseSize, ensureBenchDatabase } from './bench-database.js';
import { median, type Benchmark, type Comparison } from './lib.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../', import.meta.url));
const cli = path.join(root, 'packages/lmsctl/dist/index.js');
const rssHook = path.join(root, 'bench/max-rss.mjs');
const REPS = 5;
/** Scale of the benchmark database: about 600 MB with indexes (the issue asks for at least 500 MB). */

async function timed(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const started = performance.now();
  await run(file, args, { env, maxBuffer: 64 * 1024 * 1024 });
  return performance.now() - started;
}

/** Runs lmsctl (built) and returns its wall time and its own peak RSS in MiB. */
export async function lmsctl(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ ms: number; rssMiB: number }> {
  const rssFile = path.join(os.tmpdir(), `lms-bench-rss-${process.pid}`);
  const ms = await timed(process.execPath, ['--import', rssHook, cli, ...args], {
    ...process.env,
    NO_COLOR: '1',
    LMS_MAX_RSS_FILE: rssFile,
    ...env,
  });
  const rssMiB = Number(await readFile(rssFile, 'utf8')) / 1024;
  await rm(rssFile, { force: true });
  return { ms, rssMiB };
}

export async function psql(sql: string): Promise<void> {
  await run('psql', ['-q', '-v', 'ON_ERROR_STOP=1', '-c', sql, benchServerUrl]);
}

const log = (line: string) => process.stderr.write(`${line}\n`);

/** The median of `samples` beside its samples, for the notes. */
const listed = (samples: number[]) => samples.map(Math.round).join(', ');

/** Total size of a dump: a file, or the files of a directory-format folder. */
async function archiveBytes(file: string): Promise<number> {
  const info = await stat(file);
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const name of await readdir(file)) total += (await stat(path.join(file, name))).size;
  return total;
}

/**
 * Raw `pg_dump -Fd -j 2` on a snapshot exported by this process, which meanwhile counts every
 * table's rows in that snapshot with plain `SELECT count(*)` — what the manifest's row counts cost
 * any tool on the same cores, without lmsctl. Returns the wall time of both together.
 */
async function rawDumpWithCounts(url: string, folder: string, level: string): Promise<number> {
  const started = performance.now();
  const client = await connectClient(url);
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const snapshot = (await client.query<{ id: string }>('SELECT pg_export_snapshot() AS id')).rows[0]!.id;
    const dumped = run('pg_dump', [
      '--format=directory',
      '--jobs=2',
      `--compress=${level}`,
      `--snapshot=${snapshot}`,
      `--file=${folder}`,
      url,
    ]);
    const counted = (async () => {
      await client.query('SET LOCAL max_parallel_workers_per_gather = 0');
      const tables = await client.query<{ ident: string }>(
        `SELECT format('%I.%I', n.nspname, c.relname) AS ident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'`,
      );
      for (const { ident } of tables.rows) await client.query(`SELECT count(*) FROM ${ident}`);
    })();
    await Promise.all([dumped, counted]);
    await client.query('COMMIT');
    return performance.now() - started;
  } finally {
    await client.end();
  }
}

/**
 * On the same ≥ 600 MiB database, interleaved repetitions of:
 * - `lmsctl backup` against raw `pg_dump -Fc`, and `lmsctl backup --jobs 2` (a directory dump at
 *   its default compression) against raw `pg_dump -Fc` and raw `pg_dump -Fd -j 2` at that level,
 *   and that raw dump with the snapshot's row counts taken beside it (for the notes);
 * - `lmsctl restore --jobs 2` (verification, row-count check and swap included) of each against
 *   raw `createdb` + `pg_restore -j 2` of the raw dump of the same kind, and `lmsctl drill`;
 * - `lmsctl backup verify --deep` of each against raw `pg_restore -f /dev/null`;
 * and lmsctl's own peak RSS on that database and on one a tenth of its size.
 */
export const backupRestore: Benchmark = {
  id: 'backup-restore',
  async run() {
    await run('pnpm', ['build'], { cwd: root });
    const url = await ensureBenchDatabase('lms_bench', BENCH_SCALE, log);
    const smallUrl = await ensureBenchDatabase('lms_bench_small', BENCH_SCALE / 10, log);
    const size = await databaseSize(url);
    const smallSize = await databaseSize(smallUrl);
    const work = await mkdtemp(path.join(os.tmpdir(), 'lms-bench-'));
    const rawDump = path.join(work, 'raw.dump');
    const rawFolder = path.join(work, 'raw.dump.d');
    const dir = path.join(work, 'lmsctl');
    const parallelDir = path.join(work, 'lmsctl-parallel');
    const smallDir = path.join(work, 'small');
    const smallParallelDir = path.join(work, 'small-parallel');
    const target = withDatabase(benchServerUrl, 'lms_bench_restore_target');
    const level = DIRECTORY_DEFAULT_COMPRESS;
    try {
      const dump = {
        raw: [] as number[],
        lmsctl: [] as number[],
        rawFolder: [] as number[],
        parallel: [] as number[],
        countedFolder: [] as number[],
      };
      const restore = {
        raw: [] as number[],
        lmsctl: [] as number[],
        rawFolder: [] as number[],
        parallel: [] as number[],
      };
      const deep = { raw: [] as number[], lmsctl: [] as number[], rawFolder: [] as number[], parallel: [] as number[] };
      const drillTimes: number[] = [];
      const rss = { backup: 0, restore: 0, parallelBackup: 0, parallelRestore: 0 };
      // Each measurement starts after a checkpoint and a pause, so one step's background writes
      // do not land in the next; the order rotates from round to round to cancel any order bias.
      const settle = async () => {
        await psql('CHECKPOINT');
        await new Promise((resolve) => setTimeout(resolve, 1000));
      };
      const rotate = <T>(items: T[], by: number) => items.map((_, index) => items[(index + by) % items.length]!);
      for (let rep = 1; rep <= REPS; rep++) {
        log(`backup round ${rep}/${REPS}`);
        const steps = [
          async () => {
            await rm(rawDump, { force: true });
            await settle();
            dump.raw.push(await timed('pg_dump', ['--format=custom', `--file=${rawDump}`, url]));
          },
          async () => {
            await rm(dir, { recursive: true, force: true });
            await settle();
            const backup = await lmsctl(['backup', '--database-url', url, '--dir', dir]);
            dump.lmsctl.push(backup.ms);
            rss.backup = Math.max(rss.backup, backup.rssMiB);
          },
          async () => {
            await rm(rawFolder, { recursive: true, force: true });
            await settle();
            dump.rawFolder.push(
              await timed('pg_dump', [
                '--format=directory',
                '--jobs=2',
                `--compress=${level}`,
                `--file=${rawFolder}`,
                url,
              ]),
            );
          },
          async () => {
            await rm(rawFolder, { recursive: true, force: true });
            await settle();
            dump.countedFolder.push(await rawDumpWithCounts(url, rawFolder, level));
          },
          async () => {
            await rm(parallelDir, { recursive: true, force: true });
            await settle();
            const backup = await lmsctl(['backup', '--jobs', '2', '--database-url', url, '--dir', parallelDir]);
            dump.parallel.push(backup.ms);
            rss.parallelBackup = Math.max(rss.parallelBackup, backup.rssMiB);
          },
        ];
        for (const step of rotate(steps, rep)) await step();
      }
      await psql('CREATE DATABASE lms_bench_restore_target');
      const rawRestore = async (archive: string) => {
        await psql('DROP DATABASE IF EXISTS lms_bench_raw_restore');
        await settle();
        const started = performance.now();
        await psql('CREATE DATABASE lms_bench_raw_restore');
        await run('pg_restore', [
          '--jobs=2',
          '--no-owner',
          '--exit-on-error',
          `--dbname=${withDatabase(benchServerUrl, 'lms_bench_raw_restore')}`,
          archive,
        ]);
        return performance.now() - started;
      };
      const lmsctlRestore = async (from: string) => {
        await run(process.execPath, [cli, 'restore', 'cleanup', '--yes', '--target-database-url', target]);
        await settle();
        // The target is another database than the backups' source: named, as a restore requires.
        return lmsctl([
          'restore',
          'latest',
          '--dir',
          from,
          '--from-database',
          'lms_bench',
          '--jobs',
          '2',
          '--yes',
          '--target-database-url',
          target,
        ]);
      };
      const deepVerify = async (from: string) => {
        await settle();
        return (await lmsctl(['backup', 'verify', 'latest', '--deep', '--dir', from, '--database-url', url])).ms;
      };
      const rawDeep = async (archive: string) => {
        await settle();
        return timed('pg_restore', [`--file=${os.devNull}`, archive]);
      };
      for (let rep = 1; rep <= REPS; rep++) {
        log(`restore round ${rep}/${REPS}`);
        const steps = [
          async () => restore.raw.push(await rawRestore(rawDump)),
          async () => {
            const result = await lmsctlRestore(dir);
            restore.lmsctl.push(result.ms);
            rss.restore = Math.max(rss.restore, result.rssMiB);
          },
          async () => restore.rawFolder.push(await rawRestore(rawFolder)),
          async () => {
            const result = await lmsctlRestore(parallelDir);
            restore.parallel.push(result.ms);
            rss.parallelRestore = Math.max(rss.parallelRestore, result.rssMiB);
          },
          async () => {
            await settle();
            const drill = await lmsctl(['drill', '--dir', dir, '--jobs', '2', '--database-url', url], {
              LMS_DRILL_DIR: path.join(work, 'drills'),
            });
            drillTimes.push(drill.ms);
          },
          async () => deep.raw.push(await rawDeep(rawDump)),
          async () => deep.lmsctl.push(await deepVerify(dir)),
          async () => deep.rawFolder.push(await rawDeep(rawFolder)),
          async () => deep.parallel.push(await deepVerify(parallelDir)),
        ];
        for (const step of rotate(steps, rep)) await step();
      }
      log('small database');
      const smallBackup = await lmsctl(['backup', '--database-url', smallUrl, '--dir', smallDir]);
      const smallParallelBackup = await lmsctl([
        'backup',
        '--jobs',
        '2',
        '--database-url',
        smallUrl,
        '--dir',
        smallParallelDir,
      ]);
      const smallTarget = withDatabase(benchServerUrl, 'lms_bench_small_target');
      const smallRestore = async (from: string) => {
        await psql('DROP DATABASE IF EXISTS lms_bench_small_target');
        return lmsctl([
          'restore',
          'latest',
          '--dir',
          from,
          '--from-database',
          'lms_bench_small',
          '--jobs',
          '2',
          '--yes',
          '--create',
          '--drop-previous',
          '--target-database-url',
          smallTarget,
        ]);
      };
      const smallRestoreRss = (await smallRestore(smallDir)).rssMiB;
      const smallParallelRestoreRss = (await smallRestore(smallParallelDir)).rssMiB;
      const newest = async (folder: string) =>
        path.join(
          folder,
          (await readdir(folder))
            .filter((name) => /^lms_.*\.dump(\.d)?$/.test(name))
            .sort()
            .at(-1)!,
        );
      const dumpBytes = await archiveBytes(await newest(dir));
      const parallelBytes = await archiveBytes(await newest(parallelDir));
      const rawDumpBytes = await archiveBytes(rawDump);
      const rawFolderBytes = await archiveBytes(rawFolder);

      const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
      const time = (
        what: string,
        value: number[],
        anchorName: string,
        anchor: number[],
        limit: number,
      ): Comparison => ({
        what,
        value: median(value),
        anchorName,
        anchor: median(anchor),
        unit: 'ms',
        limit,
        direction: 'at-most',
      });
      const memory = (what: string, value: number, anchorName: string, anchor: number, limit: number): Comparison => ({
        what,
        value,
        anchorName,
        anchor,
        unit: 'MiB',
        limit,
        direction: 'at-most',
      });
      const comparisons: Comparison[] = [
        time('`lmsctl backup`', dump.lmsctl, 'raw `pg_dump -Fc`', dump.raw, 1.05),
        time('`lmsctl backup --jobs 2`', dump.parallel, 'raw `pg_dump -Fc`', dump.raw, 0.6),
        {
          what: '`lmsctl backup --jobs 2` archive size',
          value: parallelBytes / 2 ** 20,
          anchorName: 'raw `pg_dump -Fc` archive',
          anchor: rawDumpBytes / 2 ** 20,
          unit: 'MiB',
          limit: 1.1,
          direction: 'at-most',
        },
        time('`lmsctl backup --jobs 2`', dump.parallel, `raw \`pg_dump -Fd -j 2 -Z ${level}\``, dump.rawFolder, 1.05),
        time(
          '`lmsctl restore --jobs 2 --yes` of the `lmsctl backup`',
          restore.lmsctl,
          'raw `createdb` + `pg_restore -j 2` of `pg_dump -Fc`',
          restore.raw,
          1.1,
        ),
        time(
          '`lmsctl restore --jobs 2 --yes` of the `--jobs 2` backup',
          restore.parallel,
          'raw `createdb` + `pg_restore -j 2` of `pg_dump -Fd`',
          restore.rawFolder,
          1.1,
        ),
        time(
          '`lmsctl drill --jobs 2` (verify, restore, every check, drop)',
          drillTimes,
          'raw `createdb` + `pg_restore -j 2` of `pg_dump -Fc`',
          restore.raw,
          1.2,
        ),
        time(
          '`lmsctl backup verify --deep` of the `lmsctl backup`',
          deep.lmsctl,
          'raw `pg_restore -f /dev/null` of `pg_dump -Fc`',
          deep.raw,
          1.1,
        ),
        time(
          '`lmsctl backup verify --deep` of the `--jobs 2` backup',
          deep.parallel,
          'raw `pg_restore -f /dev/null` of `pg_dump -Fd`',
          deep.rawFolder,
          1.1,
        ),
        memory('lmsctl backup peak RSS', rss.backup, '150 MiB ceiling', 150, 1),
        memory('lmsctl restore peak RSS', rss.restore, '150 MiB ceiling', 150, 1),
        memory(
          `lmsctl backup peak RSS, ${mib(size)} database`,
          rss.backup,
          `same on ${mib(smallSize)}`,
          smallBackup.rssMiB,
          1.15,
        ),
        memory(
          `lmsctl restore peak RSS, ${mib(size)} database`,
          rss.restore,
          `same on ${mib(smallSize)}`,
          smallRestoreRss,
          1.15,
        ),
        memory(
          `lmsctl backup --jobs 2 peak RSS, ${mib(size)} database`,
          rss.parallelBackup,
          `same on ${mib(smallSize)}`,
          smallParallelBackup.rssMiB,
          1.15,
        ),
        memory(
          `lmsctl restore of the --jobs 2 backup, peak RSS, ${mib(size)} database`,
          rss.parallelRestore,
          `same on ${mib(smallSize)}`,
          smallParallelRestoreRss,
          1.15,
        ),
      ];
      return {
        id: 'backup-restore',
        title: 'Backup, restore and drill',
        method:
          `Database of ${mib(size)} (LMS schema; ${mib(dumpBytes)} \`lmsctl backup\`, ${mib(parallelBytes)} \`lmsctl backup --jobs 2\` at its default level ${level}; raw ${mib(rawDumpBytes)} \`pg_dump -Fc\`, ${mib(rawFolderBytes)} \`pg_dump -Fd -j 2 -Z ${level}\`), median of ${REPS} interleaved rounds; lmsctl built (\`dist/\`). ` +
          'Every measurement starts after a CHECKPOINT and a 1 s pause, and the order of the steps rotates from round to round. ' +
          'The lmsctl backups include the row counts of every table in the snapshot, the checksums and the archive listing; ' +
          'the restores include verification (manifest, checksums, archive listing), the row-count check of every table and the swap; ' +
          'the raw side is `createdb` plus `pg_restore --jobs=2 --no-owner --exit-on-error` of the raw dump of the same kind. ' +
          '`verify --deep` includes the manifest, every checksum and the listing beside pg_restore reading every block, with its default of as many pg_restore processes as CPUs (two here), each reading its share of the tables. ' +
          "Peak RSS is lmsctl's own process (`process.resourceUsage().maxRSS`), not its pg_dump/pg_restore children.",
        comparisons,
        notes: [
          `What the manifest's row counts cost on these cores, without lmsctl: raw \`pg_dump -Fd -j 2 -Z ${level}\` on a snapshot the benchmark exports, ` +
            `with every table counted in that snapshot beside it (\`SELECT count(*)\` on one connection, as lmsctl does), ` +
            `${(median(dump.countedFolder) / median(dump.rawFolder)).toFixed(2)}× raw \`pg_dump -Fd -j 2\` alone; ` +
            `\`lmsctl backup --jobs 2\` is ${(median(dump.parallel) / median(dump.countedFolder)).toFixed(2)}× that.`,
          '',
          'Samples (ms), in round order:',
          '',
          `- pg_dump -Fc ${listed(dump.raw)}; lmsctl backup ${listed(dump.lmsctl)}`,
          `- pg_dump -Fd -j 2 -Z ${level} ${listed(dump.rawFolder)}; the same with the row counts beside it ${listed(dump.countedFolder)}; lmsctl backup --jobs 2 ${listed(dump.parallel)}`,
          `- pg_restore -j 2 of -Fc ${listed(restore.raw)}; lmsctl restore ${listed(restore.lmsctl)}; lmsctl drill ${listed(drillTimes)}`,
          `- pg_restore -j 2 of -Fd ${listed(restore.rawFolder)}; lmsctl restore of the --jobs 2 backup ${listed(restore.parallel)}`,
          `- pg_restore -f /dev/null of -Fc ${listed(deep.raw)}; lmsctl backup verify --deep ${listed(deep.lmsctl)}`,
          `- pg_restore -f /dev/null of -Fd ${listed(deep.rawFolder)}; lmsctl backup verify --deep of the --jobs 2 backup ${listed(deep.parallel)}`,
        ],
      };
    } finally {
      // The last lmsctl restore kept the database it replaced, as restores do.
      await run(process.execPath, [cli, 'restore', 'cleanup', '--yes', '--target-database-url', target]).catch(
        () => undefined,
      );
      await psql('DROP DATABASE IF EXISTS lms_bench_raw_restore').catch(() => undefined);
      await psql('DROP DATABASE IF EXISTS lms_bench_restore_target').catch(() => undefined);
      await psql('DROP DATABASE IF EXISTS lms_bench_small_target').catch(() => undefined);
      await rm(work, { recursive: true, force: true });
    }
  },
};
