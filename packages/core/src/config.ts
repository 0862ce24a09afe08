import { existsSync, readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import { z } from 'zod';
import { parseDurationMs } from './duration.js';
import { ConfigError, errorMessage } from './errors.js';
import { parseRedisClusterNodes, redisConnectionOptions, redisHashTag } from './redis.js';
import { SECRET_KEY_HEX } from './secret-box.js';

/**
 * The one environment schema of the project. Every process (api, worker, lmsctl) parses the
 * environment with it once at start-up; a failure lists every problem at once.
 *
 * Each field carries its documentation (`docs/configuration.md` is generated from it) and
 * whether it is a secret (secrets are never echoed, not even in validation messages).
 */
export interface ConfigField<S extends z.ZodType = z.ZodType> {
  schema: S;
  description: string;
  /**
   * The default, as it would be written in the environment: the one statement of it. The docs
   * and `.env.example` show it, and the schema parses it like any other value when the variable
   * is unset.
   */
  default?: string;
  secret?: boolean;
  /** Group heading in the docs. */
  group:
    | 'runtime'
    | 'database'
    | 'redis'
    | 'http'
    | 'auth'
    | 'jobs'
    | 'email'
    | 'webhooks'
    | 'backups'
    | 'azure'
    | 'deployment';
}

const postgresUrl = z
  .string()
  .refine((value) => /^postgres(ql)?:\/\//i.test(value), 'must be a postgres:// or postgresql:// URL')
  .refine((value) => URL.canParse(value), 'is not a valid URL');

const redisUrl = z
  .string()
  .refine((value) => /^rediss?:\/\//i.test(value), 'must be a redis:// or rediss:// URL')
  .refine((value) => URL.canParse(value), 'is not a valid URL');

// Durations are written with a unit (`15m`, `4h`) and read as milliseconds.
const duration = z
  .string()
  .refine((value) => parseDurationMs(value) !== null, 'must be a duration with a unit, e.g. 30m, 4h, 7d')
  .transform((value) => parseDurationMs(value)!);

const booleanFlag = z.stringbool({ truthy: ['true', '1', 'yes', 'on'], falsy: ['false', '0', 'no', 'off'] });
const wholeNumber = (min: number, max: number) =>
  z.coerce
    .number({ error: `must be a whole number from ${min} to ${max}` })
    .int({ error: `must be a whole number from ${min} to ${max}` })
    .min(min, { error: `must be at least ${min}` })
    .max(max, { error: `must be at most ${max}` });
const positiveInt = (max: number) => wholeNumber(1, max);
const nonNegativeInt = (max: number) => wholeNumber(0, max);

function field<S extends z.ZodType>(definition: ConfigField<S>): ConfigField<S> {
  if (definition.default === undefined) return definition;
  // prefault, not default: the text goes through the schema, so '4h' becomes milliseconds and
  // 'false' a boolean exactly as if the variable were set to it.
  const text = definition.default as z.input<S>;
  return { ...definition, schema: definition.schema.prefault(text) as unknown as S };
}

export const configFields = {
  NODE_ENV: field({
    schema: z.enum(['development', 'test', 'staging', 'production']),
    default: 'development',
    description: 'Deployment environment. `production` enforces the secret-key and debug rules below.',
    group: 'runtime',
  }),
  DEBUG: field({
    schema: booleanFlag,
    default: 'false',
    description: 'Verbose errors (stack traces in API responses). Refused when NODE_ENV=production.',
    group: 'runtime',
  }),
  LOG_LEVEL: field({
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    default: 'info',
    description: 'Minimum level of the JSON logs written by the api and the worker.',
    group: 'runtime',
  }),
  SECRET_KEY: field({
    schema: z.string().min(1).optional(),
    description:
      'Key that signs access tokens (stored webhook secrets are encrypted with WEBHOOK_SECRET_KEY instead). Required by the API; in production at least 64 characters (e.g. `openssl rand -hex 32` gives 64).',
    secret: true,
    group: 'runtime',
  }),
  SECRET_KEY_PREVIOUS: field({
    schema: z.string().min(1).optional(),
    description:
      'During a rotation of SECRET_KEY: a second key whose access tokens are still accepted (never used to sign). It holds the other key of the rotation, whichever is newer: first the new key (every replica learns it before any signs with it), then, after the switch, the former one until ACCESS_TOKEN_TTL has passed. Same rules as SECRET_KEY; steps: `lmsctl secrets rotate --what jwt`, docs/runbooks/key-rotation.md.',
    secret: true,
    group: 'runtime',
  }),
  DATABASE_URL: field({
    schema: postgresUrl.optional(),
    description: 'PostgreSQL connection URL of the application database (`postgres://user:password@host:5432/lms`).',
    secret: true,
    group: 'database',
  }),
  DATABASE_DIRECT_URL: field({
    schema: postgresUrl.optional(),
    description:
      "The same database reached without a connection pooler, for work that needs a whole session: `lmsctl migrate` (its advisory lock), `backup`, `restore`, `drill`, `db maintain` and the worker's migration check. Unset: DATABASE_URL. Set it when DATABASE_URL goes through PgBouncer; lmsctl refuses that work through a pooler.",
    secret: true,
    group: 'database',
  }),
  DATABASE_READ_URL: field({
    schema: postgresUrl.optional(),
    description:
      "Optional hot standby of DATABASE_URL for the API's reads that may be a few seconds old (a user's lists of enrolments and courses, quiz lists, admin lists; docs/operations.md says which). Reads that decide a write, the cache fills and certificates always use the primary, and so does every read while the replica fails or lags.",
    secret: true,
    group: 'database',
  }),
  REPLICA_MAX_LAG_SECONDS: field({
    schema: positiveInt(86_400),
    default: '30',
    description:
      'A read replica further behind the primary than this is skipped: its reads go to the primary until it catches up.',
    group: 'database',
  }),
  REPLICA_READ_YOUR_WRITES_SECONDS: field({
    schema: nonNegativeInt(86_400),
    default: '10',
    description:
      "After a user's write, that user's reads go to the primary for this long, in every API process (the marker is kept in Redis; while Redis fails, their reads go to the primary), and beyond it for as long as the replica has not replayed up to that write. 0: only the replay check.",
    group: 'database',
  }),
  REPLICA_CHECK_INTERVAL_SECONDS: field({
    schema: positiveInt(3600),
    default: '5',
    description:
      "How often each API process measures the read replica's lag. It is also the circuit breaker's retry interval: after the replica fails, reads use the primary until a check at least this much later succeeds.",
    group: 'database',
  }),
  DB_POOL_SIZE: field({
    schema: positiveInt(1000),
    default: '20',
    description: 'Connections each process keeps open when idle.',
    group: 'database',
  }),
  DB_MAX_OVERFLOW: field({
    schema: nonNegativeInt(1000),
    default: '40',
    description:
      'Extra connections opened under load beyond DB_POOL_SIZE and closed again after DB_IDLE_TIMEOUT_SECONDS (pool max = size + overflow).',
    group: 'database',
  }),
  DB_IDLE_TIMEOUT_SECONDS: field({
    schema: positiveInt(86_400),
    default: '30',
    description: 'How long an overflow connection may sit idle before it is closed.',
    group: 'database',
  }),
  DB_POOL_TIMEOUT_SECONDS: field({
    schema: positiveInt(600),
    default: '5',
    description:
      'How long to wait for a connection (from the pool or a new one) before failing the request (the API answers 503 with Retry-After).',
    group: 'database',
  }),
  DB_POOL_RECYCLE_SECONDS: field({
    schema: nonNegativeInt(86_400),
    default: '3600',
    description: 'Connections older than this are closed and replaced (0 = never); keeps failovers and proxies honest.',
    group: 'database',
  }),
  DB_STATEMENT_TIMEOUT_SECONDS: field({
    schema: nonNegativeInt(86_400),
    default: '10',
    description:
      "PostgreSQL's `statement_timeout` for the api's and the worker's pool connections (0 = none): the server cancels a statement running longer (SQLSTATE 57014; the API answers 503). lmsctl's own connections (migrations, restores) are not limited.",
    group: 'database',
  }),
  DB_QUERY_TIMEOUT_SECONDS: field({
    schema: nonNegativeInt(86_400),
    default: '15',
    description:
      'How long a pool connection waits for any answer to a query before the client gives up and drops the connection (0 = forever): bounds a request when the server is frozen or the network silently drops packets, where statement_timeout cannot help. Must exceed DB_STATEMENT_TIMEOUT_SECONDS (when that is set), so the server cancels first.',
    group: 'database',
  }),
  REDIS_URL: field({
    schema: redisUrl,
    default: 'redis://127.0.0.1:6379',
    description: 'Redis for the job queues, the cache and the rate limits.',
    secret: true,
    group: 'redis',
  }),
  REDIS_CLUSTER_NODES: field({
    schema: z
      .string()
      .transform((value, ctx) => {
        try {
          return parseRedisClusterNodes(value);
        } catch (error) {
          ctx.addIssue({ code: 'custom', message: errorMessage(error) });
          return z.NEVER;
        }
      })
      .optional(),
    description:
      'Redis Cluster seed nodes, `host:port` separated by commas: when set, every Redis client (queues, workers, cache, rate limits, lmsctl) uses the cluster, and REDIS_URL gives only the user name, password and TLS (`rediss://`) of its nodes. QUEUE_PREFIX must then hold a hash tag (`{lms}`); see docs/operations.md.',
    group: 'redis',
  }),
  PORT: field({
    schema: wholeNumber(1, 65_535),
    default: '8000',
    description: 'TCP port the API listens on.',
    group: 'http',
  }),
  HOST: field({
    schema: z
      .string()
      .regex(/^[A-Za-z0-9.:%-]+$/, 'must be an address to listen on, such as 127.0.0.1, ::1 or 0.0.0.0')
      .optional(),
    description:
      "Address the API and the worker's /health and /metrics listen on. Unset: every interface (IPv6 and IPv4), which containers need; `lmsctl up --native` sets 127.0.0.1 (or its --host).",
    group: 'http',
  }),
  METRICS_PATH: field({
    schema: z.string().regex(/^\/[A-Za-z0-9/_-]*$/, 'must be a path starting with / (letters, digits, / _ -)'),
    default: '/metrics',
    description: 'Path of the Prometheus metrics endpoint.',
    group: 'http',
  }),
  API_WORKERS: field({
    schema: z.string().regex(/^(auto|[1-9]\d{0,2})$/, 'must be a number of processes (1-999) or auto (one per CPU)'),
    default: '1',
    description: 'API processes to run (node:cluster); `auto` = one per CPU. Metrics are aggregated across them.',
    group: 'http',
  }),
  TRUST_PROXY: field({
    schema: z.string().min(1),
    default: 'loopback',
    description:
      "Which proxies' X-Forwarded-For to believe for client IPs (Express `trust proxy`: loopback, a hop count, or addresses/subnets). Rate limits key on the client IP.",
    group: 'http',
  }),
  CACHE_TTL_SECONDS: field({
    schema: wholeNumber(1, 86_400),
    default: '60',
    description:
      'Lifetime of cached course catalogue pages and course details in Redis (writes invalidate them at once).',
    group: 'http',
  }),
  RATE_LIMIT_ENABLED: field({
    schema: booleanFlag,
    default: 'true',
    description: 'Turn the Redis-backed rate limits on or off.',
    group: 'http',
  }),
  RATE_LIMIT_PER_MINUTE: field({
    schema: positiveInt(1_000_000),
    default: '300',
    description: 'Requests per minute allowed from one IP address.',
    group: 'http',
  }),
  RATE_LIMIT_USER_PER_MINUTE: field({
    schema: positiveInt(1_000_000),
    default: '600',
    description: 'Requests per minute allowed for one signed-in user.',
    group: 'http',
  }),
  RATE_LIMIT_AUTH_PER_MINUTE: field({
    schema: positiveInt(1_000_000),
    default: '10',
    description: 'Login and registration attempts per minute from one IP address (brute-force guard).',
    group: 'http',
  }),
  ACCESS_TOKEN_TTL: field({
    schema: duration.prefault('15m'),
    default: '15m',
    description: 'Lifetime of the JWT access tokens the API issues.',
    group: 'auth',
  }),
  REFRESH_TOKEN_TTL: field({
    schema: duration.prefault('30d'),
    default: '30d',
    description: 'Lifetime of refresh tokens (each use rotates them; reusing a rotated one revokes the session).',
    group: 'auth',
  }),
  WORKER_CONCURRENCY_EMAILS: field({
    schema: wholeNumber(1, 100),
    default: '1',
    description: 'Jobs of the emails queue one worker process runs at once.',
    group: 'jobs',
  }),
  WORKER_CONCURRENCY_PROGRESS: field({
    schema: wholeNumber(1, 100),
    default: '1',
    description: 'Jobs of the progress queue one worker process runs at once.',
    group: 'jobs',
  }),
  WORKER_CONCURRENCY_CERTIFICATES: field({
    schema: wholeNumber(1, 100),
    default: '1',
    description: 'Jobs of the certificates queue one worker process runs at once.',
    group: 'jobs',
  }),
  WORKER_CONCURRENCY_WEBHOOKS: field({
    schema: wholeNumber(1, 100),
    default: '1',
    description: 'Jobs of the webhooks queue one worker process runs at once.',
    group: 'jobs',
  }),
  JOB_ATTEMPTS: field({
    schema: wholeNumber(1, 100),
    default: '5',
    description: 'Attempts per job before it fails for good (retries back off exponentially).',
    group: 'jobs',
  }),
  JOB_SOFT_TIME_LIMIT_SECONDS: field({
    schema: wholeNumber(1, 86_400),
    default: '240',
    description: "After this long a running job's abort signal fires so it can stop cleanly.",
    group: 'jobs',
  }),
  JOB_HARD_TIME_LIMIT_SECONDS: field({
    schema: wholeNumber(1, 86_400),
    default: '300',
    description: 'After this long a running job fails with a time-limit error and its slot is freed.',
    group: 'jobs',
  }),
  FAILED_JOB_RETENTION_HOURS: field({
    schema: wholeNumber(1, 8760),
    default: '168',
    description: 'How long failed jobs are kept for inspection (`lmsctl queue jobs --state failed`).',
    group: 'jobs',
  }),
  WORKER_METRICS_PORT: field({
    schema: wholeNumber(1, 65_535),
    default: '9464',
    description: "Port of the worker's /health and /metrics endpoint.",
    group: 'jobs',
  }),
  WORKER_SCHEDULER: field({
    schema: booleanFlag.optional(),
    description:
      'Run the periodic jobs (clean-ups, reminders, queue metrics) in this worker; default on in development, off in production (a scheduler service runs them).',
    group: 'jobs',
  }),
  INACTIVITY_REMINDER_DAYS: field({
    schema: wholeNumber(1, 365),
    default: '14',
    description: 'Learners inactive in an active enrolment for this many days get a reminder email.',
    group: 'jobs',
  }),
  CERTIFICATE_STORAGE_DIR: field({
    schema: z.string().min(1).optional(),
    description: 'Folder for certificate PDFs; when unset they are stored in the database.',
    group: 'jobs',
  }),
  SMTP_URL: field({
    schema: z
      .string()
      .refine((value) => /^smtps?:\/\//i.test(value) && URL.canParse(value), 'must be an smtp:// or smtps:// URL'),
    default: 'smtp://127.0.0.1:1025',
    description: 'Mail server for outgoing email (the dev stack runs a mail catcher on port 1025).',
    secret: true,
    group: 'email',
  }),
  SMTP_FROM: field({
    schema: z.string().min(3),
    default: 'LMS <no-reply@localhost>',
    description: 'Sender of outgoing email.',
    group: 'email',
  }),
  WEBHOOK_TIMEOUT_SECONDS: field({
    schema: wholeNumber(1, 300),
    default: '10',
    description: 'How long a webhook delivery may take before it counts as failed.',
    group: 'webhooks',
  }),
  WEBHOOK_MAX_CONSECUTIVE_FAILURES: field({
    schema: wholeNumber(1, 1000),
    default: '10',
    description: 'A subscription is disabled after this many failed deliveries in a row.',
    group: 'webhooks',
  }),
  WEBHOOK_ALLOW_PRIVATE_TARGETS: field({
    schema: booleanFlag,
    default: 'false',
    description:
      'Allow webhook URLs on addresses that are not globally reachable — loopback, private, link-local and every other special-purpose range of the IANA registries (docs/api.md) — for development and tests only; refused in production.',
    group: 'webhooks',
  }),
  WEBHOOK_SECRET_KEY: field({
    schema: z.string().regex(SECRET_KEY_HEX, 'must be 64 hex characters (e.g. `openssl rand -hex 32`)').optional(),
    description:
      'Key that encrypts webhook signing secrets in the database (AES-256-GCM), 64 hex characters (e.g. `openssl rand -hex 32`). Required in production; the api and the worker need the same one. Without it (development only) secrets are stored in plain text. To rotate, see docs/operations.md.',
    secret: true,
    group: 'webhooks',
  }),
  WEBHOOK_SECRET_KEY_PREVIOUS: field({
    schema: z.string().regex(SECRET_KEY_HEX, 'must be 64 hex characters (e.g. `openssl rand -hex 32`)').optional(),
    description:
      'During a key rotation: the former WEBHOOK_SECRET_KEY, still read (never written) until `lmsctl webhooks encrypt-secrets` has re-encrypted every secret with the new one.',
    secret: true,
    group: 'webhooks',
  }),
  LMS_BACKUP_DIR: field({
    schema: z.string().min(1),
    default: 'backups/db',
    description:
      'Folder where `lmsctl backup` writes dumps and manifests (relative paths start at the working directory).',
    group: 'backups',
  }),
  BACKUP_JOBS: field({
    schema: positiveInt(64),
    default: '1',
    description:
      'pg_dump jobs of `lmsctl backup` when --jobs is not given: 1 writes one custom-format file (`lms_….dump`), more a directory-format folder (`lms_….dump.d/`) that as many pg_dump workers fill at once (faster on several cores; see docs/backups.md).',
    group: 'backups',
  }),
  LMS_WORK_DIR: field({
    schema: z.string().min(1).optional(),
    description:
      "Folder for lmsctl's decrypted and unpacked working copies of backups (restore, drill, verify, the plaintext of an encrypted parallel backup before it is encrypted); default: the backup folder. Put it outside a folder that is synced off-site, so the sync never sees plaintext.",
    group: 'backups',
  }),
  LMS_DRILL_DIR: field({
    schema: z.string().min(1),
    default: 'backups/drills',
    description: 'Folder where `lmsctl drill` writes its reports (JSON and Markdown).',
    group: 'backups',
  }),
  LMS_DRILL_RTO: field({
    schema: duration.prefault('4h'),
    default: '4h',
    description:
      'Recovery time objective: a drill whose restore takes longer reports a warning (a failure with --strict).',
    group: 'backups',
  }),
  LMS_DRILL_RPO: field({
    schema: duration.prefault('1h'),
    default: '1h',
    description:
      'Recovery point objective: a drill of a backup older than this reports a warning (a failure with --strict).',
    group: 'backups',
  }),
  LMS_METRICS_TEXTFILE_DIR: field({
    schema: z.string().min(1).optional(),
    description:
      "node_exporter's textfile collector folder: backup and drill write their `lms_backup_*` / `lms_drill_*` metrics there.",
    group: 'backups',
  }),
  PUSHGATEWAY_URL: field({
    schema: z
      .string()
      .refine((value) => /^https?:\/\//i.test(value) && URL.canParse(value), 'must be an http:// or https:// URL')
      .optional(),
    description: 'Prometheus Pushgateway that backup and drill push their metrics to (alternative to the textfile).',
    secret: true,
    group: 'backups',
  }),
  LMS_BACKUP_KEY_FILE: field({
    schema: z.string().min(1).optional(),
    description:
      'File holding the 32-byte key for `lmsctl backup --encrypt` (64 hex characters, e.g. from `openssl rand -hex 32`). Keep it outside the backup folder; restore, verify and drill read it to decrypt. When set, every backup manifest is signed with it (HMAC-SHA256), encrypted or not.',
    group: 'backups',
  }),
  LMS_BACKUP_REQUIRE_SIGNED: field({
    schema: booleanFlag,
    default: 'false',
    description:
      'Refuse backups whose manifest is not signed with the key of LMS_BACKUP_KEY_FILE (HMAC-SHA256), or is signed with another key: restore, drill, verify and `latest` then exit 3 naming why. A plain SHA-256 digest can be recomputed by anyone who can write the backup folder. Needs LMS_BACKUP_KEY_FILE; every backup taken while it is set is signed.',
    group: 'backups',
  }),
  LMS_PG_BIN_DIR: field({
    schema: z.string().min(1).optional(),
    description:
      "Folder holding the pg_dump, pg_restore and psql to use (e.g. /usr/lib/postgresql/16/bin); default: the ones on PATH (behind Debian's pg_wrapper: the newest installed version's, as the wrapper picks for a host). Must be at least the server version.",
    group: 'backups',
  }),
  QUEUE_PREFIX: field({
    schema: z.string().regex(/^[A-Za-z0-9{}_:-]+$/, 'must use letters, digits, {}, _, : or - only'),
    default: '{lms}',
    description:
      "Redis key prefix of the BullMQ queues. The braces make a Redis Cluster hash tag, keeping each queue on one shard. The API's cache, rate limits and token deny-list live under the same name without braces (`lms:`), so deployments sharing one Redis need different values.",
    group: 'redis',
  }),
  AZURE_SUBSCRIPTION_ID: field({
    schema: z.uuid({ error: 'must be a subscription id (a UUID)' }).optional(),
    description:
      'Azure subscription of the managed PostgreSQL servers (`--subscription` of the `lmsctl azure` commands).',
    group: 'azure',
  }),
  AZURE_RESOURCE_GROUP: field({
    schema: z.string().min(1).optional(),
    description:
      'Resource group of the managed PostgreSQL servers (`--resource-group` of the `lmsctl azure` commands).',
    group: 'azure',
  }),
  AZURE_ARM_ENDPOINT: field({
    schema: z.string().refine((value) => /^https:\/\//i.test(value) && URL.canParse(value), 'must be an https:// URL'),
    default: 'https://management.azure.com',
    description: 'Azure Resource Manager endpoint (sovereign clouds: e.g. https://management.usgovcloudapi.net).',
    group: 'azure',
  }),
  AZURE_AUTHORITY_HOST: field({
    schema: z
      .string()
      .refine((value) => /^https:\/\//i.test(value) && URL.canParse(value), 'must be an https:// URL')
      .optional(),
    description: 'Microsoft Entra authority for sign-in in sovereign clouds (e.g. https://login.microsoftonline.us).',
    group: 'azure',
  }),
  AZURE_CLIENT_ID: field({
    schema: z.string().optional(),
    description:
      'Client id of a user-assigned managed identity (`--credential managed-identity`); also read by the Azure SDK itself for service-principal sign-in.',
    group: 'azure',
  }),
  LMS_AZURE_TEST_CA_FILE: field({
    schema: z.string().optional(),
    description:
      'Tests only: a PEM file of extra CAs to trust for Azure Resource Manager (a local fake of it). Leave unset in production; the system CAs and NODE_EXTRA_CA_CERTS apply.',
    group: 'azure',
  }),
  APP_DOMAIN: field({
    schema: z.string().regex(/^[A-Za-z0-9.-]+$/, 'must be a bare host name such as lms.example.com'),
    default: 'localhost',
    description: 'Public host name Caddy serves and requests certificates for.',
    group: 'deployment',
  }),
  LETSENCRYPT_EMAIL: field({
    schema: z.email().optional(),
    description: "Contact address for Let's Encrypt (expiry notices).",
    group: 'deployment',
  }),
  PROD_DATABASE_URL: field({
    schema: postgresUrl.optional(),
    description: 'Managed PostgreSQL used by the production compose file instead of the bundled database.',
    secret: true,
    group: 'deployment',
  }),
  PROD_REDIS_URL: field({
    schema: redisUrl.optional(),
    description: 'Managed Redis used by the production compose file instead of the bundled Redis.',
    secret: true,
    group: 'deployment',
  }),
} satisfies Record<string, ConfigField>;

type Fields = typeof configFields;
export type Config = { [K in keyof Fields]: z.output<Fields[K]['schema']> };
export type ConfigName = keyof Fields;

const MIN_PRODUCTION_SECRET_LENGTH = 64;

const shape = Object.fromEntries(Object.entries(configFields).map(([name, def]) => [name, def.schema])) as {
  [K in keyof Fields]: Fields[K]['schema'];
};

const configSchema = z.object(shape).superRefine((config, ctx) => {
  const statementTimeout = config.DB_STATEMENT_TIMEOUT_SECONDS;
  const queryTimeout = config.DB_QUERY_TIMEOUT_SECONDS;
  // A client that gives up first drops a connection on every slow statement, where the server
  // would have cancelled the statement and kept the connection.
  if (queryTimeout !== 0 && statementTimeout !== 0 && queryTimeout <= statementTimeout) {
    ctx.addIssue({
      code: 'custom',
      path: ['DB_QUERY_TIMEOUT_SECONDS'],
      message: `must be greater than DB_STATEMENT_TIMEOUT_SECONDS (${statementTimeout}), or 0`,
    });
  }
  if (config.WEBHOOK_SECRET_KEY_PREVIOUS && !config.WEBHOOK_SECRET_KEY) {
    ctx.addIssue({
      code: 'custom',
      path: ['WEBHOOK_SECRET_KEY_PREVIOUS'],
      message: 'is only read during a rotation: set WEBHOOK_SECRET_KEY to the new key as well',
    });
  }
  if (config.SECRET_KEY_PREVIOUS && !config.SECRET_KEY) {
    ctx.addIssue({
      code: 'custom',
      path: ['SECRET_KEY_PREVIOUS'],
      message: 'is only read during a rotation: set SECRET_KEY as well',
    });
  }
  if (config.REDIS_CLUSTER_NODES) {
    // BullMQ's scripts touch many keys of a queue at once: in a cluster they must share a slot.
    if (redisHashTag(config.QUEUE_PREFIX) === null) {
      ctx.addIssue({
        code: 'custom',
        path: ['QUEUE_PREFIX'],
        message: `must hold a Redis Cluster hash tag when REDIS_CLUSTER_NODES is set, e.g. {${config.QUEUE_PREFIX.replace(/[{}]/g, '')}}`,
      });
    }
    if (redisConnectionOptions(config.REDIS_URL).db) {
      ctx.addIssue({
        code: 'custom',
        path: ['REDIS_URL'],
        message: 'names a database, but a Redis Cluster has only database 0: drop the /N from the URL',
      });
    }
  }
  if (config.NODE_ENV !== 'production') return;
  if (!config.WEBHOOK_SECRET_KEY) {
    ctx.addIssue({
      code: 'custom',
      path: ['WEBHOOK_SECRET_KEY'],
      message: 'is required in production (it encrypts webhook signing secrets; e.g. `openssl rand -hex 32`)',
    });
  }
  if (!config.SECRET_KEY) {
    ctx.addIssue({ code: 'custom', path: ['SECRET_KEY'], message: 'is required in production' });
  } else if (config.SECRET_KEY.length < MIN_PRODUCTION_SECRET_LENGTH) {
    ctx.addIssue({
      code: 'custom',
      path: ['SECRET_KEY'],
      message: `must be at least ${MIN_PRODUCTION_SECRET_LENGTH} characters in production (it has ${config.SECRET_KEY.length})`,
    });
  }
  if (config.SECRET_KEY_PREVIOUS && config.SECRET_KEY_PREVIOUS.length < MIN_PRODUCTION_SECRET_LENGTH) {
    ctx.addIssue({
      code: 'custom',
      path: ['SECRET_KEY_PREVIOUS'],
      message: `must be at least ${MIN_PRODUCTION_SECRET_LENGTH} characters in production (it has ${config.SECRET_KEY_PREVIOUS.length})`,
    });
  }
  if (config.DEBUG) {
    ctx.addIssue({ code: 'custom', path: ['DEBUG'], message: 'must be false in production (it exposes internals)' });
  }
  if (config.WEBHOOK_ALLOW_PRIVATE_TARGETS) {
    ctx.addIssue({
      code: 'custom',
      path: ['WEBHOOK_ALLOW_PRIVATE_TARGETS'],
      message: 'must be false in production (it lets webhooks reach internal services)',
    });
  }
});

/**
 * Parses the environment. Unset and empty variables take their defaults; every problem is
 * collected into one `ConfigError` whose lines never contain the offending value of a secret.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const input: Record<string, string> = {};
  for (const name of Object.keys(configFields)) {
    const value = env[name];
    if (value !== undefined && value.trim() !== '') input[name] = value.trim();
  }
  const result = configSchema.safeParse(input);
  if (result.success) return result.data as Config;
  const problems = result.error.issues.map((issue) => {
    const name = issue.path.join('.') || 'environment';
    return `${name}: ${issue.message}`;
  });
  throw new ConfigError(problems);
}

/**
 * The variables the environment sets (to something not blank), as opposed to those left to their
 * defaults: e.g. a restore insists on reaching a Redis the operator named, not the default one.
 */
export function givenConfigNames(env: NodeJS.ProcessEnv = process.env): ReadonlySet<ConfigName> {
  return new Set((Object.keys(configFields) as ConfigName[]).filter((name) => (env[name]?.trim() ?? '') !== ''));
}

/** Names of the variables that hold secrets, for redaction. */
export const secretConfigNames: readonly string[] = Object.entries(configFields)
  .filter(([, def]) => 'secret' in def && def.secret)
  .map(([name]) => name);

/**
 * Adds the variables of a `.env` file to `env`; variables already set win, as with docker
 * compose. Throws an error whose message names the file when it is missing or unreadable.
 */
export function loadEnvFile(file: string, env: NodeJS.ProcessEnv): void {
  if (!existsSync(file)) throw new Error(`env file not found: ${file}`);
  let parsed: Record<string, string | undefined>;
  try {
    parsed = parseEnv(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new Error(`cannot read env file ${file}: ${errorMessage(error)}`, { cause: error });
  }
  for (const [name, value] of Object.entries(parsed)) if (env[name] === undefined) env[name] = value;
}
