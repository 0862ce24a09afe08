/**
 * Masking of credentials in URLs and free text. Used by the logger, lmsctl's output and error
 * translation so that a connection string never reaches a log line, a manifest or `--json`.
 */

const MASK = '***';

/** `postgres://user:secret@host/db` → `postgres://user:***@host/db`. Non-URLs come back unchanged. */
export function maskUrl(url: string): string {
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
  // Both patterns need an '@' or a '='; most log strings have neither, and skip the regexes.
  if (!text.includes('@') && !text.includes('=')) return text;
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
