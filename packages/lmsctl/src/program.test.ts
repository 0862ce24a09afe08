import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runLmsctl, spawnLmsctl } from './testing/run-cli.js';

let workDir: string;
let tracer: string;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-help-'));
  // A module hook that writes every resolved module URL to LMS_TRACE_FILE.
  const hook = path.join(workDir, 'trace-hook.mjs');
  await writeFile(
    hook,
    `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(process.env.LMS_TRACE_FILE, result.url + '\\n');
  return result;
}
`,
  );
  tracer = path.join(workDir, 'register-trace.mjs');
  await writeFile(
    tracer,
    `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hook).href)});\n`,
  );
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

async function modulesLoadedBy(args: string[], traceName: string): Promise<string[]> {
  const traceFile = path.join(workDir, traceName);
  await writeFile(traceFile, '');
  const run = await runLmsctl(args, {
    nodeArgs: ['--import', pathToFileURL(tracer).href],
    env: { LMS_TRACE_FILE: traceFile },
  });
  expect(run.exitCode).not.toBe(undefined);
  return (await readFile(traceFile, 'utf8')).split('\n').filter(Boolean);
}

describe('lmsctl --help', () => {
  it('lists only the commands that exist, the global options and the exit codes', async () => {
    const run = await runLmsctl(['--help']);
    expect(run.exitCode).toBe(0);
    const commands = /Commands:\n([\s\S]*?)\n\n/.exec(String(run.stdout))?.[1] ?? '';
    const names = commands.split('\n').flatMap((line) => /^ {2}(\S+)/.exec(line)?.[1] ?? []);
    expect(names).toEqual([
      'migrate',
      'backup',
      'restore',
      'drill',
      'schedule',
      'queue',
      'status',
      'check',
      'user',
      'webhooks',
      'secrets',
      'db',
      'up',
      'down',
      'ps',
      'logs',
      'restart',
      'config',
      'seed',
      'deploy',
      'azure',
      'help',
    ]);
    for (const option of ['--json', '--yes', '--env-file', '--database-url', '--verbose', '--version']) {
      expect(run.stdout).toContain(option);
    }
    expect(run.stdout).toContain(
      'Exit codes: 0 done, 1 failed, 2 usage error or refused confirmation, 3 verification failed',
    );
  });

  it('loads no command body, database driver or config library to print help', async () => {
    const loaded = await modulesLoadedBy(['--help'], 'help.trace');
    expect(loaded.some((url) => url.endsWith('/lmsctl/src/program.ts'))).toBe(true);
    for (const heavy of [
      '/commands/migrate.ts',
      '/core/src/index.ts',
      '/node_modules/pg/',
      '/node_modules/zod/',
      '/node_modules/pino/',
      '/node_modules/@azure/',
    ]) {
      expect(
        loaded.filter((url) => url.includes(heavy)),
        heavy,
      ).toEqual([]);
    }
  });

  it('does load the command body when the command runs (control for the test above)', async () => {
    const loaded = await modulesLoadedBy(
      ['migrate', 'status', '--database-url', 'postgres://x@127.0.0.1:1/x'],
      'run.trace',
    );
    expect(loaded.some((url) => url.includes('/commands/migrate.ts'))).toBe(true);
  });

  it('every subcommand has help with examples or a description', async () => {
    const run = await runLmsctl(['migrate', '--help']);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toContain('Examples:');
    for (const sub of ['up', 'status', 'validate', 'create', 'down']) expect(run.stdout).toContain(sub);
  });

  it("a subcommand's help lists the program's options that apply to it, and describes its arguments", async () => {
    const run = await runLmsctl(['backup', 'list', '--help']);
    expect(run.exitCode).toBe(0);
    const global = /Global Options:\n([\s\S]*?)\n\n/.exec(run.stdout)?.[1] ?? '';
    for (const option of ['--json', '--yes', '--env-file', '--database-url', '--verbose']) {
      expect(global).toContain(option);
    }
    // `backup`'s own options and the program's --version do not apply to `backup list`.
    for (const option of ['--encrypt', '--compress', '--dir', '--version']) expect(global).not.toContain(option);

    for (const command of [
      ['queue', 'show'],
      ['queue', 'retry'],
    ]) {
      const help = (await runLmsctl([...command, '--help'])).stdout;
      expect(help).toMatch(/Arguments:\n {2}queue +emails, progress, certificates or webhooks\n {2}id +the /);
    }
  });

  it('prints the version', async () => {
    const run = await runLmsctl(['--version']);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('exits 2 on an unknown command or option', async () => {
    expect((await runLmsctl(['frobnicate'])).exitCode).toBe(2);
    expect((await runLmsctl(['migrate', 'status', '--no-such-flag'])).exitCode).toBe(2);
  });

  it('stops quietly when the reader of its output goes away (`lmsctl … | head`)', async () => {
    const child = spawnLmsctl(['queue', '--help']);
    // Closed before the CLI has started, so its first write meets a pipe without a reader.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const result = await child;
    expect(stderr).not.toContain('EPIPE');
    expect(result.exitCode).toBe(0);
  });
});
