import { pino, type Logger, type LoggerOptions } from 'pino';
import { maskSecretsInText, redactSecrets } from './mask.js';

export type { Logger } from 'pino';

// Logged objects are redacted by redactSecrets (secret field names at any depth). pino redacts by
// path only what that never sees: child loggers' own fields (top level) and headers serialised by
// pino's standard request and response serializers. Wildcard paths (`*.password`) would cost
// every line and every child logger.
const redactPaths = [
  'password',
  'token',
  'secret',
  'accessToken',
  'refreshToken',
  'SECRET_KEY',
  'DATABASE_URL',
  'REDIS_URL',
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
];

function serializeError(err: unknown): unknown {
  // The standard serializer returns a prototype-backed object; copy it so redactSecrets walks it.
  const serialized = { ...(pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>) };
  return redactSecrets(serialized);
}

export interface CreateLoggerOptions {
  level?: LoggerOptions['level'];
  /** Component name added to every line (`api`, `worker`, `lmsctl`). */
  name?: string;
  /** Where the JSON lines go (default stdout); tests pass a stream to inspect them. */
  destination?: NodeJS.WritableStream;
}

/**
 * JSON logger for the api and worker: redacts secret fields, masks passwords in any URL found
 * in the message or in string fields, serialises errors with their masked message and stack.
 */
export function createLogger(options: CreateLoggerOptions = {}): Logger {
  const loggerOptions: LoggerOptions = {
    level: options.level ?? 'info',
    base: options.name ? { name: options.name } : {},
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: redactPaths, censor: '[redacted]' },
    serializers: { err: serializeError, error: serializeError },
    formatters: {
      level: (label) => ({ level: label }),
      log: (object) => redactSecrets(object) as Record<string, unknown>,
    },
    hooks: {
      logMethod(args, method) {
        const masked = args.map((arg) => (typeof arg === 'string' ? maskSecretsInText(arg) : arg)) as Parameters<
          typeof method
        >;
        method.apply(this, masked);
      },
    },
  };
  return options.destination ? pino(loggerOptions, options.destination as pino.DestinationStream) : pino(loggerOptions);
}
