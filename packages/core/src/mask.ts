import { secretConfigNames } from './config.js';

/**
 * Masking of credentials in URLs, free text and structured data. Used by the logger, lmsctl's
 * output and error translation so that a connection string never reaches a log line, a manifest
 * or `--json`.
 */

const MASK = '***';

/**
 * `postgres://user:secret@host/db` → `postgres://user:***@host/db`. Anything that is not a single
 * URL (a message that merely starts with `Error:`) is masked as free text.
 */
export function maskUrl(url: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\/\S*$/i.test(url)) return maskSecretsInText(url);
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = MASK;
    for (const key of [...parsed.searchParams.keys()]) {
      if (/pass|secret|token|key/i.test(key)) parsed.searchParams.set(key, MASK);
    }
    return parsed.toString().replace(`:${encodeURIComponent(MASK)}@`, `:${MASK}@`);
  } catch {
    return maskSecretsInText(url);
  }
}

// scheme://user:password@ — the password part is anything up to the last '@' before the host.
const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*:)([^\s@/]*)@/gi;
// key=value pairs as they appear in libpq connection strings and command lines.
const KEY_VALUE_SECRET = /\b(password|passwd|pwd|secret|token|api[_-]?key)(\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&]+)/gi;

/** Masks URL passwords and `password=…`-style pairs anywhere in a text. */
export function maskSecretsInText(text: string): string {
  // Both patterns need an '@', a '=' or a ':'; most log strings have none, and skip the regexes.
  if (!text.includes('@') && !text.includes('=') && !text.includes(':')) return text;
  return text.replace(URL_CREDENTIALS, `$1${MASK}@`).replace(KEY_VALUE_SECRET, `$1$2${MASK}`);
}

/** Host, port and database of a PostgreSQL URL, for messages that must not show credentials. */
export function describePostgresUrl(url: string): { host: string; port: number; database: string; user: string } {
  const parsed = new URL(url);
  return {
    // libpq accepts the host (or a unix socket folder) as a query parameter too.
    host: parsed.searchParams.get('host') ?? (decodeURIComponent(parsed.hostname) || 'localhost'),
    port: parsed.port ? Number(parsed.port) : 5432,
    database: decodeURIComponent(parsed.pathname.replace(/^\//, '')) || decodeURIComponent(parsed.username),
    user: parsed.searchParams.get('user') ?? decodeURIComponent(parsed.username),
  };
}

// Field names that hold secrets wherever they appear: passwords and their hashes, tokens,
// secrets, API keys, credentials headers; and the secret configuration variables by name.
const SECRET_FIELD = /passw(or)?d|^pwd$|secret|token|authorization|cookie|api[-_]?key/i;
const secretConfigFields: ReadonlySet<string> = new Set(secretConfigNames);
const REDACTED = '[redacted]';

/** True for a field name whose value must never be shown (`password`, `refreshToken`, `DATABASE_URL`, …). */
export function isSecretField(key: string): boolean {
  return SECRET_FIELD.test(key) || secretConfigFields.has(key);
}

/**
 * Plain data with secret fields replaced by `[redacted]` at any depth (up to 5 levels) and URL
 * passwords masked in every string. Class instances (requests, sockets, errors) are returned as
 * they are: they have serializers of their own, and walking them would be costly.
 */
export function redactSecrets(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return maskSecretsInText(value);
  if (depth > 4 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((item) => redactSecrets(item, depth + 1));
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    out[key] = isSecretField(key) ? REDACTED : redactSecrets(inner, depth + 1);
  }
  return out;
}
