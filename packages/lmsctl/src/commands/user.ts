import type { ChalkInstance } from 'chalk';
import { connectClient } from '@lms/core';
import { requireDatabaseUrl, type CommandContext } from '../context.js';
import { CliError, ExitCode, usageError } from '../errors.js';

export type UserRole = 'admin' | 'instructor' | 'student';

export interface UserCreateOptions {
  email: string;
  name: string;
  role: UserRole;
  /** The password (from stdin or the prompt; never from a command-line argument). */
  password: string;
}

export interface UserCreateResult {
  id: string;
  email: string;
  name: string;
  role: UserRole;
}

/** Reads the password from stdin (`--password-stdin`), trimming the final newline only. */
export async function readPasswordFromStdin(stdin: NodeJS.ReadableStream = process.stdin): Promise<string> {
  let text = '';
  for await (const chunk of stdin) text += (chunk as Buffer).toString('utf8');
  return text.replace(/\r?\n$/, '');
}

/** Asks for the password twice on the terminal, hidden; refuses when there is no terminal. */
export async function promptPassword(): Promise<string> {
  if (!process.stdin.isTTY || !process.stderr.isTTY) {
    throw usageError(
      'no password given',
      'pipe it in with --password-stdin, e.g. `printf %s "$PASSWORD" | lmsctl user create … --password-stdin`',
    );
  }
  const { password } = await import('@inquirer/prompts');
  const first = await password({ message: 'Password', mask: '*' }, { output: process.stderr });
  const again = await password({ message: 'Repeat password', mask: '*' }, { output: process.stderr });
  if (first !== again) throw usageError('the two passwords differ; nothing was created');
  return first;
}

/**
 * Creates an account from the terminal — the way to make the first admin. The password is
 * hashed like the API does (argon2id) and never echoed or logged.
 */
export async function userCreate(ctx: CommandContext, options: UserCreateOptions): Promise<UserCreateResult> {
  const { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, hashPassword } = await import('@lms/core/passwords');
  const email = options.email.trim().toLowerCase();
  if (email.length > 320 || !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email))
    throw usageError(`--email "${options.email}" is not an e-mail address`);
  const name = options.name.trim();
  if (!name || name.length > 200) throw usageError('--name must be 1 to 200 characters');
  if (options.password.length < MIN_PASSWORD_LENGTH || options.password.length > MAX_PASSWORD_LENGTH) {
    throw usageError(`the password must be ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters`);
  }
  const client = await connectClient(requireDatabaseUrl(ctx), { applicationName: 'lmsctl user create' });
  try {
    const { rows } = await client.query<UserCreateResult>(
      `INSERT INTO users (email, name, password_hash, role) VALUES ($1, $2, $3, $4)
       ON CONFLICT (email) DO NOTHING RETURNING id, email, name, role`,
      [email, name, await hashPassword(options.password), options.role],
    );
    if (!rows[0]) throw new CliError(ExitCode.failed, `a user with e-mail ${email} already exists`);
    return rows[0];
  } catch (error) {
    if ((error as { code?: string }).code === '42P01') {
      throw new CliError(ExitCode.failed, 'the database has no users table yet', 'run `lmsctl migrate` first');
    }
    throw error;
  } finally {
    await client.end();
  }
}

export function renderUserCreate(result: UserCreateResult, style: ChalkInstance): string {
  return `${style.green('created')} ${result.role} ${result.email} (${result.name}), id ${result.id}`;
}
