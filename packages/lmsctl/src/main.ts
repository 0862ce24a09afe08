import { CommanderError } from 'commander';
import type { Runtime } from './cli/action.js';
import { CliError, describeSystemError, ExitCode, findSystemError, NO_SPACE_HINT } from './errors.js';
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
    // Commander knows --verbose once it parsed the options; an error while parsing has only argv.
    const verbose =
      program.opts<{ verbose?: boolean }>().verbose === true || argv.includes('--verbose') || argv.includes('-v');
    if (error instanceof CommanderError) {
      if (error.code === 'commander.version') {
        stdout.write(`${json ? JSON.stringify({ version: error.message }, null, 2) : error.message}\n`);
        return ExitCode.ok;
      }
      // Commander has already printed the help or its usage message.
      if (error.code === 'commander.helpDisplayed') return ExitCode.ok;
      if (json) writeJsonError(stdout, { code: 'usage', message: error.message.replace(/^error: /, ''), exitCode: 2 });
      return ExitCode.usage;
    }
    const { maskSecretsInText } = await import('@lms/core/essentials');
    const failure = explain(error);
    const message = maskSecretsInText(failure.message);
    const hint = failure.hint && maskSecretsInText(failure.hint);
    const out = new Output({ json, verbose, env: runtime.env, streams: { stdout, stderr } });
    out.error(message, hint);
    // Stack traces are for reporting a bug, not for operators: only on request, and masked.
    if (verbose) stderr.write(`${maskSecretsInText(stackOf(error))}\n`);
    if (json && !(error instanceof CliError && error.resultPrinted)) {
      writeJsonError(stdout, { code: failure.code, message, ...(hint ? { hint } : {}), exitCode: failure.exitCode });
    }
    return failure.exitCode;
  }
}

/** The machine-readable code of an error that has none of its own. */
const CODE_OF_EXIT: Record<ExitCode, string> = {
  [ExitCode.ok]: 'ok',
  [ExitCode.failed]: 'failed',
  [ExitCode.usage]: 'usage',
  [ExitCode.verification]: 'verification_failed',
};

interface Failure {
  exitCode: ExitCode;
  /** Machine-readable: lmsctl's own code, a SQLSTATE-bearing PostgreSQL error, or the system's (ENOSPC). */
  code: string;
  message: string;
  hint?: string;
}

/** What to tell the operator about `error`: the one place where errors become words and exit codes. */
function explain(error: unknown): Failure {
  const err = (error ?? {}) as ErrorLike;
  const message = err.message ?? String(error);
  if (error instanceof CliError || (typeof err.exitCode === 'number' && err.exitCode >= 1 && err.exitCode <= 3)) {
    const exitCode = err.exitCode as ExitCode;
    const code = typeof err.code === 'string' ? err.code : CODE_OF_EXIT[exitCode];
    if (typeof err.hint === 'string') return { exitCode, code, message, hint: err.hint };
    // pg_dump, pg_restore and tar report a full disk in words, not as a code.
    return { exitCode, code, message, ...(/no space left on device/i.test(message) ? { hint: NO_SPACE_HINT } : {}) };
  }
  // A server-side SQL error (pg DatabaseError) is an operational failure, not a bug in lmsctl.
  if (typeof err.code === 'string' && typeof error === 'object' && error !== null && 'severity' in error) {
    return {
      exitCode: ExitCode.failed,
      code: err.code,
      message: `PostgreSQL: ${message} [SQLSTATE ${err.code}]`,
    };
  }
  const system = findSystemError(error);
  const described = system && describeSystemError(system);
  if (system && described) {
    // Wrapped as a cause, the outer message says what lmsctl was doing.
    const wrapped = system !== error && !message.includes(system.message);
    return {
      exitCode: ExitCode.failed,
      code: system.code,
      message: wrapped ? `${message}: ${described.message}` : described.message,
      hint: described.hint,
    };
  }
  return {
    exitCode: ExitCode.failed,
    code: system?.code ?? 'internal_error',
    message,
    hint: system
      ? 'run again with --verbose for details'
      : 'this looks like a bug in lmsctl: run again with --verbose for the stack trace, and report it',
  };
}

/** The stack of `error` and of every error it wraps as its cause. */
function stackOf(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    const stack = current instanceof Error ? (current.stack ?? current.message) : JSON.stringify(current);
    parts.push(depth === 0 ? stack : `caused by: ${stack}`);
    current = (current as { cause?: unknown }).cause;
  }
  return parts.join('\n');
}

function writeJsonError(
  stdout: NodeJS.WritableStream,
  error: { code: string; message: string; hint?: string; exitCode: number },
): void {
  stdout.write(`${JSON.stringify({ error }, null, 2)}\n`);
}
