import { pino, type Logger, type LoggerOptions } from 'pino';
import { maskSecretsInText } from './mask.js';

export type { Logger } from 'pino';

/**
 * Field names whose values never reach a log line, wherever they appear in a logged object
 * (request bodies, headers, job payloads, config dumps).
 */
const REDACTED_KEYS = [
  'password',
  'newPassword',
  'passwordHash',
  'password_hash',
  'secret',
  'token',
  'accessToken',
  'refreshToken',
  'authorization',
  'cookie',
  'set-cookie',
  'apiKey',
  'SECRET_KEY',
  'DATABASE_URL',
  'REDIS_URL',
  'SMTP_URL',
  'PROD_DATABASE_URL',
  'PROD_REDIS_URL',
] as const;

const REDACTED = '[redacted]';
const redactedKeys: ReadonlySet<string> = new Set(REDACTED_KEYS);

// Fields of logged objects are redacted by name at any depth in maskDeep. pino redacts by path
// only what maskDeep never sees: child loggers' own fields (top level) and headers serialised by
// pino's standard request and response serializers. Wildcard paths (`*.password`) would cost
// every line and every child logger.
const redactPaths = REDACTED_KEYS.map((key) => (/^[A-Za-z_$][\w$]*$/.test(key) ? key : `["${key}"]`)).concat([
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
]);

function maskDeep(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return maskSecretsInText(value);
  if (depth > 4 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((item) => maskDeep(item, depth + 1));
  // Only plain data is walked: requests, responses and errors have serializers of their own,
  // and walking a socket or an IncomingMessage would cost every log line dearly.
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    out[key] = redactedKeys.has(key) ? REDACTED : maskDeep(inner, depth + 1);
  }
  return out;
}

function serializeError(err: unknown): unknown {
  // The standard serializer returns a prototype-backed object; copy it so maskDeep walks it.
  const serialized = { ...(pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>) };
  return maskDeep(serialized);
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
    redact: { paths: redactPaths, censor: REDACTED },
    serializers: { err: serializeError, error: serializeError },
    formatters: {
      level: (label) => ({ level: label }),
      log: (object) => maskDeep(object) as Record<string, unknown>,
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
