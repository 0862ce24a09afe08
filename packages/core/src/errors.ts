/**
 * Error types shared by every process. Each process family translates them in exactly one
 * place: the API's error handler maps `AppError.status`, lmsctl's entry point maps
 * `exitCode`. Messages are written for the person reading them and never carry secrets.
 */
export class AppError extends Error {
  /** HTTP status the API answers with. */
  readonly status: number;
  /** Stable machine-readable code, e.g. `not_found`. */
  readonly code: string;
  /** lmsctl exit code (DESIGN.md: 1 failed, 2 usage/refused, 3 verification failed). */
  readonly exitCode: number;

  constructor(message: string, options: { status?: number; code?: string; exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.status = options.status ?? 500;
    this.code = options.code ?? 'internal_error';
    this.exitCode = options.exitCode ?? 1;
  }
}

export class ValidationError extends AppError {
  constructor(message: string) {
    super(message, { status: 400, code: 'validation_error', exitCode: 2 });
  }
}

export class UnauthorizedError extends AppError {
  constructor(message = 'authentication required') {
    super(message, { status: 401, code: 'unauthorized' });
  }
}

export class ForbiddenError extends AppError {
  constructor(message = 'you are not allowed to do this') {
    super(message, { status: 403, code: 'forbidden' });
  }
}

export class NotFoundError extends AppError {
  constructor(message = 'not found') {
    super(message, { status: 404, code: 'not_found' });
  }
}

export class ConflictError extends AppError {
  constructor(message: string) {
    super(message, { status: 409, code: 'conflict' });
  }
}

/** The environment failed validation; `problems` holds one line per problem. */
export class ConfigError extends AppError {
  readonly problems: string[];

  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`, { code: 'config_error' });
    this.problems = problems;
  }
}

/** PostgreSQL could not be reached or refused the connection. */
export class DatabaseConnectionError extends AppError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 'database_unavailable', status: 503, cause });
  }
}

/** Something that was expected to match did not (checksum, manifest, drill check): exit 3. */
export class VerificationError extends AppError {
  constructor(message: string) {
    super(message, { code: 'verification_failed', exitCode: 3 });
  }
}

/**
 * The message of anything thrown, for failure reasons and log lines: `catch` binds `unknown`,
 * and a library may throw a string or a plain object instead of an Error.
 */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === 'string') return error;
  return JSON.stringify(error) ?? 'unknown error';
}
