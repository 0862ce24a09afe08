import { CliError, ExitCode } from '../errors.js';

export interface ConfirmOptions {
  /** `--yes` was given: proceed without asking. */
  yes: boolean;
  /** What `--yes` would confirm, for the refusal message when nobody can be asked. */
  action: string;
  /**
   * Ask the user to type this (a production database's name) instead of answering y/N: a
   * reflexive "y" at 3 a.m. must not replace production.
   */
  typeToConfirm?: string;
  stdin?: { isTTY?: boolean };
  stderr?: NodeJS.WritableStream & { isTTY?: boolean };
}

/**
 * Asks before a destructive step. `--yes` skips the question; without a terminal to ask on,
 * it refuses (exit 2) rather than guessing; answering no also exits 2 with nothing changed.
 */
export async function confirmOrRefuse(question: string, options: ConfirmOptions): Promise<void> {
  if (options.yes) return;
  const stdin = options.stdin ?? process.stdin;
  const stderr = options.stderr ?? process.stderr;
  if (!stdin.isTTY || !stderr.isTTY) {
    throw new CliError(
      ExitCode.usage,
      `refusing to ${options.action} without confirmation: no terminal to ask on`,
      'pass --yes to confirm non-interactively',
    );
  }
  const { confirm, input } = await import('@inquirer/prompts');
  const expected = options.typeToConfirm;
  let answer: boolean;
  try {
    answer = expected
      ? (
          await input(
            { message: `${question}\n  Type the database name (${expected}) to confirm:` },
            { output: stderr },
          )
        ).trim() === expected
      : await confirm({ message: question, default: false }, { output: stderr });
  } catch (error) {
    // Ctrl-C at the prompt is a "no", not a crash.
    if ((error as Error).name === 'ExitPromptError') answer = false;
    else throw error;
  }
  if (!answer) {
    throw new CliError(
      ExitCode.usage,
      `cancelled: did not ${options.action}`,
      expected ? `type exactly ${expected} to confirm` : undefined,
    );
  }
}
