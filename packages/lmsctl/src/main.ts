import { CommanderError } from 'commander';
import type { Runtime } from './cli/action.js';
import { CliError, ExitCode } from './errors.js';
import { Output } from './output.js';
import { buildProgram } from './program.js';

interface ErrorLike {
  message?: string;
  stack?: string;
  exitCode?: unknown;
  code?: unknown;
  problems?: unknown;
  hint?: unknown;
  name?: string;
}

/**
 * Runs lmsctl with `argv` (without node and script) and returns the exit code. This is the one
 * place where errors become messages and exit codes: commands only throw.
 */
export async function main(
  argv: string[],
  runtime: Runtime = { env: process.env, cwd: process.cwd() },
): Promise<number> {
  const program = buildProgram(runtime);
  const stdout = runtime.streams?.stdout ?? process.stdout;
  const stderr = runtime.streams?.stderr ?? process.stderr;
  const json = argv.includes('--json');
  try {
    await program.parseAsync(argv, { from: 'user' });
    return ExitCode.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has already printed help, the version, or its usage message.
      const informational = ['commander.helpDisplayed', 'commander.version'].includes(error.code);
      return informational ? ExitCode.ok : ExitCode.usage;
    }
    const { maskSecretsInText } = await import('@lms/core');
    const err = (error ?? {}) as ErrorLike;
    const known =
      error instanceof CliError || (typeof err.exitCode === 'number' && err.exitCode >= 1 && err.exitCode <= 3);
    // A server-side SQL error (pg DatabaseError) is an operational failure, not a bug in lmsctl.
    const fromPostgres = !known && typeof err.code === 'string' && 'severity' in (error as object);
    const exitCode = known ? (err.exitCode as number) : ExitCode.failed;
    const message = maskSecretsInText(
      fromPostgres ? `PostgreSQL: ${err.message} [SQLSTATE ${String(err.code)}]` : (err.message ?? String(error)),
    );
    const hint = typeof err.hint === 'string' ? err.hint : undefined;
    const out = new Output({ json, verbose: false, env: runtime.env, streams: { stdout, stderr } });
    out.error(message, hint);
    if (!known && !fromPostgres) {
      // An unexpected failure is a bug: show where it happened (masked), for the report.
      stderr.write(`${maskSecretsInText(err.stack ?? '')}\n`);
    }
    if (json && !(error instanceof CliError && error.resultPrinted)) {
      const code = typeof err.code === 'string' ? err.code : known ? 'failed' : 'internal_error';
      stdout.write(`${JSON.stringify({ error: { code, message, exitCode } }, null, 2)}\n`);
    }
    return exitCode;
  }
}
