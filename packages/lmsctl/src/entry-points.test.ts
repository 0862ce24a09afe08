import { copyFile, cp, mkdir, mkdtemp, readdir, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from './testing/run-cli.js';

// Every way lmsctl is started must leave `--env-file` to lmsctl. Node 20 otherwise reads it even
// after the script's name (nodejs/node#54232): it exits 9 on a missing file, and applies a
// NODE_OPTIONS line in an existing one. The files below catch both.

const packageDir = path.join(repoRoot, 'packages', 'lmsctl');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const { version } = JSON.parse(await readFile(path.join(packageDir, 'package.json'), 'utf8')) as { version: string };

let work: string;
let missing: string;
/** Sets NODE_OPTIONS to preload a module that does not exist: Node dies if it reads this file. */
let trap: string;
let first: string;
let second: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-entry-'));
  missing = path.join(work, 'missing.env');
  trap = path.join(work, 'trap.env');
  first = path.join(work, 'first.env');
  second = path.join(work, 'second.env');
  await writeFile(
    trap,
    `NODE_OPTIONS=--require=${path.join(work, 'absent.cjs')}\nLMS_BACKUP_DIR=${path.join(work, 'from-trap')}\n`,
  );
  await writeFile(first, `LMS_BACKUP_DIR=${path.join(work, 'from-first')}\n`);
  await writeFile(second, `LMS_BACKUP_DIR=${path.join(work, 'from-second')}\n`);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const missingFileError = () =>
  `error: env file not found: ${missing}\n` +
  'check the path given to --env-file (without the option, lmsctl reads ./.env when there is one)';

/** Runs a command with only PATH and HOME from this environment (no developer DATABASE_URL). */
async function run(file: string, args: string[], options: { cwd?: string; env?: Record<string, string> } = {}) {
  const result = await execa(file, args, {
    reject: false,
    extendEnv: false,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: '1', ...options.env },
    cwd: options.cwd ?? work,
    stdin: 'ignore',
  });
  return { exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr };
}

const backupDirOf = (stdout: string) => (JSON.parse(stdout) as { dir: string }).dir;

describe('the repository entry: pnpm exec lmsctl (and pnpm lmsctl)', () => {
  const pnpm = (args: string[], env?: Record<string, string>) => run('pnpm', args, { cwd: repoRoot, env });

  it.each([[['exec', 'lmsctl']], [['lmsctl']]])(
    'pnpm %j: a missing --env-file is a usage error of lmsctl, with nothing from pnpm or Node',
    async (entry) => {
      const result = await pnpm([...entry, '--env-file', missing, 'backup', 'list']);
      expect(result.stderr).toBe(missingFileError());
      expect(result.stdout).toBe('');
      expect(result.exitCode).toBe(2);
    },
  );

  it('lmsctl reads the --env-file, and Node does not', async () => {
    const result = await pnpm(['exec', 'lmsctl', '--env-file', trap, 'backup', 'list', '--json']);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(backupDirOf(result.stdout)).toBe(path.join(work, 'from-trap'));
  });

  it('the last --env-file counts, and a variable set in the environment beats the file', async () => {
    const last = await pnpm(['exec', 'lmsctl', '--env-file', first, 'backup', 'list', '--env-file', second, '--json']);
    expect(last.exitCode, last.stderr).toBe(0);
    expect(backupDirOf(last.stdout)).toBe(path.join(work, 'from-second'));

    const set = path.join(work, 'from-environment');
    const environment = await pnpm(['exec', 'lmsctl', '--env-file', second, 'backup', 'list', '--json'], {
      LMS_BACKUP_DIR: set,
    });
    expect(environment.exitCode, environment.stderr).toBe(0);
    expect(backupDirOf(environment.stdout)).toBe(set);
  });

  it('in a checkout without its dev dependencies, says to run pnpm install', async () => {
    const checkout = path.join(work, 'checkout');
    await cp(path.join(packageDir, 'bin'), path.join(checkout, 'bin'), { recursive: true });
    await mkdir(path.join(checkout, 'src'));
    await copyFile(path.join(packageDir, 'src', 'index.ts'), path.join(checkout, 'src', 'index.ts'));
    await copyFile(path.join(packageDir, 'package.json'), path.join(checkout, 'package.json'));
    const result = await run(process.execPath, ['--', path.join(checkout, 'bin', 'lmsctl.js'), '--version']);
    expect(result.stderr).toBe(
      'error: lmsctl cannot run its sources: tsx is missing (run pnpm install in the repository)',
    );
    expect(result.exitCode).toBe(1);
  });
});

describe('the built binary (bin/ and dist/, as the package ships)', () => {
  let bin: string;

  /**
   * Lays out what `pnpm build` and `pnpm deploy` produce, under `work`: @lms/core and lmsctl
   * compiled with their build configurations, lmsctl's bin/ and package.json, and the installed
   * dependencies linked in. No src/ beside bin/, so the binary runs dist/. `--noCheck` only skips
   * type checking (pnpm typecheck does that): the JavaScript is the same.
   */
  beforeAll(async () => {
    const installed = path.join(work, 'installed');
    const core = path.join(installed, 'node_modules', '@lms', 'core');
    const lmsctl = path.join(installed, 'lmsctl');
    const build = (pkg: string, outDir: string) =>
      execa(process.execPath, [
        tsc,
        '-p',
        path.join(repoRoot, 'packages', pkg, 'tsconfig.build.json'),
        '--outDir',
        outDir,
        '--noCheck',
        '--declaration',
        'false',
        '--sourceMap',
        'false',
      ]);
    await Promise.all([build('core', path.join(core, 'dist')), build('lmsctl', path.join(lmsctl, 'dist'))]);

    await copyFile(path.join(repoRoot, 'packages', 'core', 'package.json'), path.join(core, 'package.json'));
    await symlink(
      await realpath(path.join(repoRoot, 'packages', 'core', 'node_modules')),
      path.join(core, 'node_modules'),
    );
    await cp(path.join(packageDir, 'bin'), path.join(lmsctl, 'bin'), { recursive: true });
    await copyFile(path.join(packageDir, 'package.json'), path.join(lmsctl, 'package.json'));
    const dependencies = path.join(lmsctl, 'node_modules');
    await mkdir(dependencies);
    for (const name of await readdir(path.join(packageDir, 'node_modules'))) {
      // @lms/core comes from the build above (one level up); .bin holds no modules.
      if (name === '@lms' || name.startsWith('.')) continue;
      await symlink(await realpath(path.join(packageDir, 'node_modules', name)), path.join(dependencies, name));
    }
    bin = path.join(lmsctl, 'bin', 'lmsctl.js');
  });

  it('runs the compiled CLI', async () => {
    const result = await run(process.execPath, ['--', bin, '--version']);
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(version);
    expect(result.exitCode).toBe(0);
  });

  it('started by its own path (the #! line): a missing --env-file is a usage error of lmsctl', async () => {
    const result = await run(bin, ['--env-file', missing, 'backup', 'list']);
    expect(result.stderr).toBe(missingFileError());
    expect(result.exitCode).toBe(2);
  });

  it('started by its own path: lmsctl reads the --env-file, and Node does not', async () => {
    const result = await run(bin, ['--env-file', trap, 'backup', 'list', '--json']);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(backupDirOf(result.stdout)).toBe(path.join(work, 'from-trap'));
  });
});
