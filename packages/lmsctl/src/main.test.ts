import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@lms/core/testing';
import { backup } from './backup/create.js';
import { seedLmsDatabase } from './testing/backup-fixtures.js';
import { testContext } from './testing/context.js';
import { cliEntry, runLmsctl, type CliRun } from './testing/run-cli.js';

/**
 * Operational failures end lmsctl with one `error:` line naming the path or port, a hint, and no
 * stack trace unless --verbose. The failures are real: a full tmpfs, a folder the user may not
 * read, a missing folder, a port something else listens on.
 */
let database: TestDatabase;
let work: string;
let backups: string;
let keyFile: string;
let fullDiskScript: string;

beforeAll(async () => {
  database = await createTestDatabase('errors');
  // Enough rows that neither the dump nor a bundle of it fits the 16 KiB disk below.
  await seedLmsDatabase(database.url, { users: 1000 });
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-errors-'));
  // Other users (nobody, below) pass through to the folders made inside.
  await chmod(work, 0o755);
  backups = path.join(work, 'backups');
  await mkdir(backups);
  keyFile = path.join(work, 'backup.key');
  // A backup key as `openssl rand -hex 32` makes one.
  await writeFile(keyFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  await backup(testContext({ cwd: work, env: { DATABASE_URL: database.url, LMS_BACKUP_DIR: backups } }).ctx);
  // A full disk without touching the machine: a 16 KiB tmpfs in a mount namespace of lmsctl's
  // own (an unprivileged user namespace, so it works for root and other users alike), listed
  // after lmsctl ends, before the namespace and its tmpfs are gone.
  fullDiskScript = path.join(work, 'full-disk.sh');
  await writeFile(
    fullDiskScript,
    `dir=$1; listing=$2; shift 2
mount -t tmpfs -o size=16k tmpfs "$dir" || exit 99
"$@"; code=$?
ls -A "$dir" > "$listing"
exit $code
`,
  );
});

afterAll(async () => {
  await database.drop();
  // Readable again, so that a run as another user than root can remove it.
  await chmod(path.join(work, 'locked'), 0o755).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
});

/** Runs lmsctl with `dir` a tiny, nearly full disk; returns the run and what was left in `dir`. */
async function onFullDisk(name: string, args: string[], env: Record<string, string> = {}) {
  const dir = path.join(work, name);
  await mkdir(dir);
  const listing = path.join(work, `${name}.listing`);
  const run = await runLmsctl(args, {
    cwd: work,
    env: { DATABASE_URL: database.url, LMS_BACKUP_KEY_FILE: keyFile, ...env },
    prefix: ['unshare', '--user', '--map-root-user', '--mount', 'sh', fullDiskScript, dir, listing],
  });
  expect(run.exitCode, run.stderr).not.toBe(99);
  const left = (await readFile(listing, 'utf8')).split('\n').filter(Boolean);
  return { run, left };
}

/** The error line and its hint: exactly one `error:` line, followed by the hint, and no stack. */
function oneError(run: CliRun): { error: string; hint: string | undefined } {
  const lines = run.stderr.split('\n');
  const errors = lines.filter((line) => line.startsWith('error: '));
  expect(errors, run.stderr).toHaveLength(1);
  expect(run.stderr).not.toMatch(/^\s+at /m);
  const index = lines.indexOf(errors[0]!);
  return { error: errors[0]!, hint: lines[index + 1] };
}

const NO_SPACE_HINT =
  'free space on that disk, or write to a bigger one (backups: --dir or LMS_BACKUP_DIR; bundles: --out)';

describe('a full disk', () => {
  it('fails a backup with one line and a hint, leaving nothing in the folder', async () => {
    const dir = path.join(work, 'full-plain');
    const { run, left } = await onFullDisk('full-plain', ['backup', '--dir', dir]);
    expect(run.exitCode).toBe(1);
    const { error, hint } = oneError(run);
    expect(error).toMatch(/^error: pg_dump failed: .*No space left on device/);
    expect(hint).toBe(NO_SPACE_HINT);
    expect(left).toEqual([]);
  });

  it('fails an encrypted backup naming the folder it was writing, leaving nothing', async () => {
    const dir = path.join(work, 'full-encrypted');
    const { run, left } = await onFullDisk('full-encrypted', ['backup', '--encrypt', '--dir', dir]);
    expect(run.exitCode).toBe(1);
    expect(oneError(run)).toEqual({ error: `error: no space left on device writing ${dir}`, hint: NO_SPACE_HINT });
    expect(left).toEqual([]);
  });

  it('fails a bundle naming the file, leaving no half-written bundle; --json says so on stdout', async () => {
    const out = path.join(work, 'full-bundle', 'lms.tar.gz');
    const { run, left } = await onFullDisk('full-bundle', [
      'backup',
      'bundle',
      'latest',
      '--dir',
      backups,
      '--out',
      out,
      '--json',
    ]);
    expect(run.exitCode).toBe(1);
    expect(oneError(run)).toEqual({ error: `error: no space left on device writing ${out}`, hint: NO_SPACE_HINT });
    expect(JSON.parse(run.stdout)).toEqual({
      error: { code: 'ENOSPC', message: `no space left on device writing ${out}`, hint: NO_SPACE_HINT, exitCode: 1 },
    });
    expect(left).toEqual([]);
  });
});

describe('a path that does not exist', () => {
  it('names the missing folder of --out', async () => {
    const missing = path.join(work, 'no-such-folder');
    const run = await runLmsctl(
      ['backup', 'bundle', 'latest', '--dir', backups, '--out', path.join(missing, 'lms.tar.gz')],
      { cwd: work },
    );
    expect(run.exitCode).toBe(1);
    expect(oneError(run)).toEqual({
      error: `error: folder ${missing} does not exist`,
      hint: 'create it first, or choose another path',
    });
    expect(await readdir(work)).not.toContain('no-such-folder');
  });
});

describe('a folder lmsctl may not read or write', () => {
  // Root passes every permission check: the child then runs as nobody, as an operator would.
  const asUnprivileged =
    process.getuid?.() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : [];
  const user = asUnprivileged.length ? 'nobody' : os.userInfo().username;
  let locked: string;

  beforeAll(async () => {
    // nobody must be able to read the checkout to run lmsctl from it at all; a clone inside a
    // private folder (`mktemp -d` makes them 0700) would otherwise fail below with a bare
    // "Cannot find module".
    if (asUnprivileged.length) {
      const reads = await execa(asUnprivileged[0]!, [...asUnprivileged.slice(1), 'test', '-r', cliEntry], {
        reject: false,
      });
      if (reads.exitCode !== 0) {
        throw new Error(
          `these tests run lmsctl as nobody, who cannot read ${cliEntry}: put the checkout where other users may read it (a parent folder is private, e.g. one made by mktemp -d: chmod 755 it)`,
        );
      }
    }
    locked = path.join(work, 'locked');
    await mkdir(locked);
    await chmod(locked, 0o000);
  });

  it('names the folder and the user; the stack only with --verbose', async () => {
    const run = await runLmsctl(['backup', 'list', '--dir', locked], { cwd: work, prefix: asUnprivileged });
    expect(run.exitCode).toBe(1);
    expect(oneError(run)).toEqual({
      error: `error: permission denied: cannot list the folder ${locked}`,
      hint: `check the owner and permissions of ${locked}; lmsctl runs as ${user}`,
    });

    const verbose = await runLmsctl(['backup', 'list', '--dir', locked, '--verbose'], {
      cwd: work,
      prefix: asUnprivileged,
    });
    expect(verbose.exitCode).toBe(1);
    expect(verbose.stderr).toContain(`error: permission denied: cannot list the folder ${locked}`);
    expect(verbose.stderr).toMatch(/^Error: EACCES: permission denied, scandir/m);
    expect(verbose.stderr).toMatch(/^\s+at .*backup/m);
  });

  it('blames the folder when a backup cannot create its folder inside it', async () => {
    const run = await runLmsctl(['backup', '--dir', path.join(locked, 'db')], {
      cwd: work,
      prefix: asUnprivileged,
      env: { DATABASE_URL: database.url },
    });
    expect(run.exitCode).toBe(1);
    expect(oneError(run)).toEqual({
      error: `error: permission denied: cannot create the folder ${path.join(locked, 'db')}`,
      hint: `check the owner and permissions of ${locked}; lmsctl runs as ${user}`,
    });
  });
});

describe('an invalid --database-url', () => {
  it('is a usage error (exit 2) that does not repeat the URL or its password', async () => {
    for (const url of ['postgres://lms:hunter2@[db', 'mysql://lms:hunter2@db/lms', 'lms:hunter2@db']) {
      const run = await runLmsctl(['migrate', 'status', '--database-url', url]);
      expect(run.exitCode, url).toBe(2);
      expect(oneError(run).error).toBe('error: --database-url is not a PostgreSQL URL');
      expect(run.stderr).toContain('expected postgres://USER@HOST:5432/DATABASE');
      expect(run.stderr + run.stdout).not.toContain('hunter2');
    }
  });
});

describe('a busy port', () => {
  it('stops up --native before it starts anything, naming the port and the variable', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as net.AddressInfo;
    const cwd = await mkdtemp(path.join(work, 'native-'));
    try {
      const run = await runLmsctl(['up', '--native'], { cwd, env: { PORT: String(port) } });
      expect(run.exitCode).toBe(1);
      expect(oneError(run)).toEqual({
        error: `error: port ${port} (PORT) is already in use`,
        hint: 'stop what listens there (an API or worker still running?), or set PORT to a free port',
      });
      // Nothing was started or created: not even the .lms data folder.
      expect(await readdir(cwd)).toEqual([]);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});
