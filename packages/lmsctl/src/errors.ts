/** lmsctl's exit codes (DESIGN.md). */
export const ExitCode = {
  ok: 0,
  /** The operation failed. */
  failed: 1,
  /** Usage error, or a confirmation refused or impossible. */
  usage: 2,
  /** A verification failed: bad checksum, drill mismatch, edited migration. */
  verification: 3,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * An error meant for the person at the terminal: one line that says what happened, an
 * optional hint that says what to do, and the exit code. Thrown anywhere in lmsctl; turned
 * into output and an exit code only in `index.ts`.
 */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    readonly hint?: string,
    /** The command already wrote its result (e.g. a failed drill's report): no JSON error document. */
    readonly resultPrinted = false,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export const usageError = (message: string, hint?: string) => new CliError(ExitCode.usage, message, hint);
