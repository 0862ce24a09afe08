import os from 'node:os';
import type pg from 'pg';
import { connectClient } from '../db.js';
import { AppError, VerificationError } from '../errors.js';
import {
  formatVersion,
  hasStatements,
  MigrationFilesError,
  readMigrationFiles,
  type MigrationFile,
} from './migration-files.js';
import { lineAt, splitSqlStatements } from './sql-statements.js';

/** Table that records applied migrations. */
export const MIGRATIONS_TABLE = 'public.schema_migrations';
/** Advisory lock key pair ("lmsm", 1) that serialises every migration run on a database. */
const LOCK_KEY: readonly [number, number] = [0x6c6d736d, 1];
const LOCK_POLL_MS = 200;
/** The savepoint a migration runs under, so the runner can tell its own failed transaction from one the file began. */
const GUARD_SAVEPOINT = 'lms_migration_guard';
const NO_TRANSACTION_HINT =
  'put that statement in a migration file of its own with a line "-- migrate:no-transaction" (see the README, Migrations)';

export type MigrationState = 'applied' | 'pending' | 'changed' | 'missing';

export interface MigrationStatusEntry {
  version: number;
  id: string;
  state: MigrationState;
  /** Present once applied. */
  appliedAt?: string;
  appliedBy?: string;
  durationMs?: number;
  hasDown: boolean;
}

export interface AppliedRecord {
  version: number;
  name: string;
  checksum: string;
  appliedAt: Date;
  appliedBy: string;
  durationMs: number;
}

export type MigratorEvent =
  | { kind: 'lock-wait'; holder: string }
  | { kind: 'lock-acquired'; waitedMs: number }
  | { kind: 'apply-start'; migration: MigrationFile }
  | { kind: 'apply-done'; migration: MigrationFile; durationMs: number }
  | { kind: 'revert-start'; migration: MigrationFile }
  | { kind: 'revert-done'; migration: MigrationFile; durationMs: number };

export interface MigratorOptions {
  connectionString: string;
  dir: string;
  /** How long to wait for another run's lock before giving up. */
  lockTimeoutMs?: number;
  onEvent?: (event: MigratorEvent) => void;
  applicationName?: string;
}

/** A migration's SQL failed; its transaction was rolled back, nothing of it remains. */
export class MigrationFailedError extends AppError {
  constructor(
    message: string,
    readonly migration: string,
    cause: unknown,
    /** What to do about it, when the error itself does not say. */
    readonly hint?: string,
  ) {
    super(message, { code: 'migration_failed', exitCode: 1, cause });
  }
}

/**
 * A migration stopped part way and may be partly applied: a `-- migrate:no-transaction` file
 * failed after some of its statements committed, or a file ended the runner's transaction. It
 * was not recorded (a revert keeps its record); someone has to look at the database.
 */
export class MigrationIncompleteError extends AppError {
  constructor(
    message: string,
    readonly migration: string,
    readonly hint: string,
    cause?: unknown,
  ) {
    super(message, { code: 'migration_incomplete', exitCode: 1, cause });
  }
}

/** The migration history cannot be reconciled with the files (edited, missing, out of order). */
export class MigrationHistoryError extends VerificationError {}

export class MigrationRefusedError extends AppError {
  constructor(message: string) {
    super(message, { code: 'migration_refused', exitCode: 2 });
  }
}

export interface UpResult {
  applied: Array<{ version: number; id: string; durationMs: number }>;
  /** With dryRun: what would be applied. */
  pending: Array<{ version: number; id: string }>;
  current: number | null;
}

export interface DownResult {
  reverted: Array<{ version: number; id: string; durationMs: number }>;
  current: number | null;
}

/** A rolling deploy runs only migrations the previous version can live with (expand/contract). */
function assertExpandOnly(pending: MigrationFile[]): void {
  for (const file of pending) {
    if (file.contract) {
      throw new MigrationRefusedError(
        `${file.filename} is marked "-- migrate:contract": it removes what the running version may still use, so it runs only after every instance runs the version that no longer needs it (pass --allow-contract to run it now)`,
      );
    }
    const [first] = file.contractStatements;
    if (first) {
      throw new MigrationRefusedError(
        `${file.filename} line ${first.line}: ${first.kind} in a rolling deploy would break the version still running; mark the file "-- migrate:contract" and deploy it after the code that stops using it (expand/contract), or pass --allow-contract`,
      );
    }
  }
}

function whoAmI(): string {
  let user: string;
  try {
    user = os.userInfo().username;
  } catch {
    // Containers may run under a uid with no passwd entry.
    user = `uid ${process.getuid?.() ?? '?'}`;
  }
  return `${user}@${os.hostname()}`;
}

/** "line 3, column 14" for a 1-based character position inside `sql`. */
function positionIn(sql: string, position: number, firstLine: number): string {
  const before = sql.slice(0, Math.max(0, position - 1));
  const lines = before.split('\n');
  const line = firstLine + lines.length - 1;
  const column = (lines.at(-1)?.length ?? 0) + 1;
  return `line ${line}, column ${column}`;
}

/** The error with its position in the file; `offset` is where the failing query starts in `sql`. */
function describeSqlError(error: unknown, sql: string, firstLine: number, offset = 0): string {
  const err = error as { message?: string; position?: string; code?: string };
  const where = err.position ? ` at ${positionIn(sql, offset + Number(err.position), firstLine)}` : '';
  const code = err.code ? ` [SQLSTATE ${err.code}]` : '';
  return `${err.message ?? String(error)}${where}${code}`;
}

/**
 * Applies and reverts the SQL migrations of a folder against one database.
 *
 * Every mutating run takes a session-level advisory lock first, so any number of concurrent
 * runs (parallel CI jobs, several containers starting) apply each migration exactly once; the
 * others wait, then find nothing left to do. Each migration and its record commit in one
 * transaction: a failure leaves neither behind.
 */
export class Migrator {
  private readonly options: Required<Omit<MigratorOptions, 'onEvent'>> & Pick<MigratorOptions, 'onEvent'>;

  constructor(options: MigratorOptions) {
    this.options = {
      lockTimeoutMs: 10 * 60_000,
      applicationName: 'lmsctl migrate',
      ...options,
    };
  }

  async files(): Promise<MigrationFile[]> {
    return readMigrationFiles(this.options.dir);
  }

  /** Every file and every applied record, reconciled. Read-only; takes no lock. */
  async status(): Promise<{ entries: MigrationStatusEntry[]; current: number | null }> {
    const files = await this.files();
    return this.withClient(async (client) => {
      const applied = await this.readApplied(client);
      return { entries: reconcile(files, applied), current: applied.at(-1)?.version ?? null };
    });
  }

  /** Throws `MigrationHistoryError` naming every edited, missing or out-of-order migration. */
  async validate(): Promise<{ checked: number; pending: number; current: number | null }> {
    const files = await this.files();
    return this.withClient(async (client) => {
      const applied = await this.readApplied(client);
      assertHistoryMatches(files, applied);
      return {
        checked: applied.length,
        pending: files.length - applied.length,
        current: applied.at(-1)?.version ?? null,
      };
    });
  }

  /** Applies pending migrations in order, up to and including `to` when given. */
  /**
   * Applies the pending migrations (up to `to`). With `expandOnly` (a rolling deploy, while the
   * previous version still serves) it refuses, before applying anything, a pending file marked
   * `-- migrate:contract` and one that drops or renames a table, view or column without the mark.
   */
  async up(options: { to?: number; dryRun?: boolean; expandOnly?: boolean } = {}): Promise<UpResult> {
    const files = await this.files();
    if (options.to !== undefined && !files.some((file) => file.version === options.to)) {
      throw new MigrationRefusedError(
        `there is no migration ${formatVersion(options.to)}; \`lmsctl migrate status\` lists the versions`,
      );
    }
    for (const file of files) {
      if (!hasStatements(file.upSql)) {
        throw new MigrationRefusedError(
          `${file.filename} has no SQL before "-- migrate:down"; write the change or delete the file`,
        );
      }
    }
    const selectPending = (applied: AppliedRecord[]) => {
      assertHistoryMatches(files, applied);
      const appliedVersions = new Set(applied.map((record) => record.version));
      const pending = files.filter(
        (file) => !appliedVersions.has(file.version) && (options.to === undefined || file.version <= options.to),
      );
      assertNoTransactionControl(pending, 'up');
      if (options.expandOnly) assertExpandOnly(pending);
      return pending;
    };

    if (options.dryRun) {
      return this.withClient(async (client) => {
        const applied = await this.readApplied(client);
        const pending = selectPending(applied);
        return {
          applied: [],
          pending: pending.map((file) => ({ version: file.version, id: file.id })),
          current: applied.at(-1)?.version ?? null,
        };
      });
    }

    return this.withLockedClient(async (client) => {
      const pending = selectPending(await this.readApplied(client));
      await this.ensureTable(client);
      const done: UpResult['applied'] = [];
      for (const migration of pending) {
        this.options.onEvent?.({ kind: 'apply-start', migration });
        const durationMs = await this.run(client, migration, 'up', async (ms) => {
          await client.query(
            `INSERT INTO ${MIGRATIONS_TABLE} (version, name, checksum, duration_ms, applied_by)
             VALUES ($1, $2, $3, $4, $5)`,
            [migration.version, migration.name, migration.checksum, ms, `${whoAmI()} as ${client.user ?? '?'}`],
          );
        });
        this.options.onEvent?.({ kind: 'apply-done', migration, durationMs });
        done.push({ version: migration.version, id: migration.id, durationMs });
      }
      const applied = await this.readApplied(client);
      return { applied: done, pending: [], current: applied.at(-1)?.version ?? null };
    });
  }

  /**
   * The newest `steps` applied migrations, newest first, after checking each can be reverted.
   * Nothing is changed; `down` re-checks the same plan under the lock.
   */
  async planDown(steps: number): Promise<MigrationFile[]> {
    const files = await this.files();
    return this.withClient(async (client) => planRevert(files, await this.readApplied(client), steps));
  }

  /** Reverts exactly the migrations `planDown(steps)` returned (`expected` guards against a concurrent change). */
  async down(steps: number, expected?: readonly number[]): Promise<DownResult> {
    const files = await this.files();
    return this.withLockedClient(async (client) => {
      await this.ensureTable(client);
      const plan = planRevert(files, await this.readApplied(client), steps);
      if (expected && plan.map((file) => file.version).join() !== expected.join()) {
        throw new MigrationRefusedError(
          'the migration history changed while waiting for the lock; run the command again',
        );
      }
      const reverted: DownResult['reverted'] = [];
      for (const migration of plan) {
        this.options.onEvent?.({ kind: 'revert-start', migration });
        const durationMs = await this.run(client, migration, 'down', async () => {
          await client.query(`DELETE FROM ${MIGRATIONS_TABLE} WHERE version = $1`, [migration.version]);
        });
        this.options.onEvent?.({ kind: 'revert-done', migration, durationMs });
        reverted.push({ version: migration.version, id: migration.id, durationMs });
      }
      const applied = await this.readApplied(client);
      return { reverted, current: applied.at(-1)?.version ?? null };
    });
  }

  /**
   * Runs one direction of a migration and `record`s it. Not `withTransaction`, deliberately: a
   * migration must run on the one connection that holds the session advisory lock (a pooled
   * client would run it outside the lock), and its failure is reported with the file and line.
   */
  private async run(
    client: pg.Client,
    migration: MigrationFile,
    direction: 'up' | 'down',
    record: (durationMs: number) => Promise<void>,
  ): Promise<number> {
    const section = {
      sql: direction === 'up' ? migration.upSql : (migration.downSql ?? ''),
      firstLine: direction === 'up' ? 1 : migration.downStartLine,
    };
    return migration.transactional
      ? this.runInTransaction(client, migration, direction, section, record)
      : this.runWithoutTransaction(client, migration, direction, section, record);
  }

  /**
   * The file runs as one query inside a transaction that also records it. The file check refuses
   * COMMIT/ROLLBACK/BEGIN; as a second line of defence the runner checks it is still in its own
   * transaction afterwards (same transaction id, its savepoint still there), so a statement that
   * ended it is reported as what it is — possibly partly applied — instead of "applied" or
   * "nothing of it was applied".
   */
  private async runInTransaction(
    client: pg.Client,
    migration: MigrationFile,
    direction: 'up' | 'down',
    { sql, firstLine }: { sql: string; firstLine: number },
    record: (durationMs: number) => Promise<void>,
  ): Promise<number> {
    const started = performance.now();
    await client.query('BEGIN');
    const { rows } = await client.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid');
    const xid = rows[0]!.xid;
    await client.query(`SAVEPOINT ${GUARD_SAVEPOINT}`);
    try {
      await client.query(sql);
    } catch (error) {
      const stillOurs = await this.backInOwnTransaction(client, xid);
      await client.query('ROLLBACK').catch(() => undefined);
      const described = describeSqlError(error, sql, firstLine);
      if (!stillOurs) throw leftTransactionError(migration, direction, described, error);
      const what = direction === 'up' ? 'failed' : 'failed to revert';
      const code = (error as { code?: unknown }).code;
      throw new MigrationFailedError(
        `migration ${migration.filename} ${what}, nothing of it was applied: ${described}`,
        migration.filename,
        error,
        // 25001: e.g. CREATE INDEX CONCURRENTLY, VACUUM, ALTER SYSTEM.
        code === '25001' ? NO_TRANSACTION_HINT : undefined,
      );
    }
    const after = await client.query<{ xid: string | null }>('SELECT pg_current_xact_id_if_assigned()::text AS xid');
    if (after.rows[0]?.xid !== xid) {
      // Whatever transaction is open now is not ours; the file's own work since then goes too.
      await client.query('ROLLBACK').catch(() => undefined);
      throw leftTransactionError(migration, direction, null);
    }
    try {
      const durationMs = Math.round(performance.now() - started);
      await record(durationMs);
      await client.query('COMMIT');
      return durationMs;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw new MigrationFailedError(
        `migration ${migration.filename} ${direction === 'up' ? 'failed' : 'failed to revert'}, nothing of it was applied: ${describeSqlError(error, sql, firstLine)}`,
        migration.filename,
        error,
      );
    }
  }

  /**
   * After a failed query: true when the open (aborted) transaction is still the runner's own.
   * Only a transaction that has the runner's savepoint can roll back to it; one the file began
   * after ending ours cannot.
   */
  private async backInOwnTransaction(client: pg.Client, xid: string): Promise<boolean> {
    try {
      await client.query(`ROLLBACK TO SAVEPOINT ${GUARD_SAVEPOINT}`);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      // 3B001: no such savepoint; 25P01: no transaction at all. Both mean ours has ended.
      if (code === '3B001' || code === '25P01') return false;
      // A broken connection: the server rolls back whatever was open, ours included.
      return true;
    }
    const { rows } = await client.query<{ xid: string | null }>('SELECT pg_current_xact_id_if_assigned()::text AS xid');
    return rows[0]?.xid === xid;
  }

  /**
   * `-- migrate:no-transaction`: each statement runs as a query of its own and commits on its own
   * (CREATE INDEX CONCURRENTLY cannot run in a transaction, nor in a multi-statement query). The
   * record is written, or removed on revert, only once every statement has succeeded; the
   * advisory lock is held throughout as for any other migration.
   */
  private async runWithoutTransaction(
    client: pg.Client,
    migration: MigrationFile,
    direction: 'up' | 'down',
    { sql, firstLine }: { sql: string; firstLine: number },
    record: (durationMs: number) => Promise<void>,
  ): Promise<number> {
    const statements = splitSqlStatements(sql);
    const started = performance.now();
    const stopped = (index: number, problem: string, cause?: unknown) => {
      const line = firstLine + lineAt(sql, statements[index]!.firstTokenAt) - 1;
      const before =
        index === 0 ? 'no statement before it had run' : `the ${index} statement(s) before it stay committed`;
      return new MigrationIncompleteError(
        `migration ${migration.filename} ${direction === 'up' ? 'failed' : 'failed to revert'} at statement ${index + 1} of ${statements.length} (line ${line}) and may be partly applied — it runs without a transaction (-- migrate:no-transaction), so ${before}; it ${direction === 'up' ? 'was not recorded' : 'is still recorded as applied'}: ${problem}`,
        migration.filename,
        'undo what it did or make the file safe to run again (a failed CREATE INDEX CONCURRENTLY leaves an INVALID index, which IF NOT EXISTS would keep: drop it), then run lmsctl migrate again',
        cause,
      );
    };
    for (const [index, statement] of statements.entries()) {
      try {
        await client.query(statement.text);
      } catch (error) {
        // The client learns the transaction state only after the error is delivered; a ROLLBACK
        // with nothing open is a harmless warning, and ends a block a mis-split statement began.
        await client.query('ROLLBACK').catch(() => undefined);
        throw stopped(index, describeSqlError(error, sql, firstLine, statement.start), error);
      }
      if (client.getTransactionStatus() !== 'I') {
        // Only a transaction-control statement the file check missed gets here.
        await client.query('ROLLBACK').catch(() => undefined);
        throw stopped(index, 'it left a transaction open, which the runner rolled back');
      }
    }
    const durationMs = Math.round(performance.now() - started);
    await record(durationMs);
    return durationMs;
  }

  private async withClient<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = await connectClient(this.options.connectionString, {
      applicationName: this.options.applicationName,
    });
    try {
      return await work(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private async withLockedClient<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
    return this.withClient(async (client) => {
      await this.acquireLock(client);
      try {
        return await work(client);
      } finally {
        await client.query('SELECT pg_advisory_unlock($1, $2)', [...LOCK_KEY]).catch(() => undefined);
      }
    });
  }

  private async acquireLock(client: pg.Client): Promise<void> {
    const started = Date.now();
    let announced = false;
    for (;;) {
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS locked', [
        ...LOCK_KEY,
      ]);
      if (rows[0]?.locked) {
        if (announced) this.options.onEvent?.({ kind: 'lock-acquired', waitedMs: Date.now() - started });
        return;
      }
      if (!announced) {
        announced = true;
        this.options.onEvent?.({ kind: 'lock-wait', holder: await this.describeLockHolder(client) });
      }
      if (Date.now() - started > this.options.lockTimeoutMs) {
        throw new AppError(
          `another migration run has held the lock for over ${Math.round(this.options.lockTimeoutMs / 1000)} s (${await this.describeLockHolder(client)}); try again once it has finished`,
          { code: 'migration_lock_timeout' },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
    }
  }

  private async describeLockHolder(client: pg.Client): Promise<string> {
    const { rows } = await client.query<{ pid: number; application_name: string; client_addr: string | null }>(
      `SELECT a.pid, a.application_name, a.client_addr::text AS client_addr
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2 AND l.granted
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      [...LOCK_KEY],
    );
    const holder = rows[0];
    if (!holder) return 'holder unknown';
    return `pid ${holder.pid}, ${holder.application_name || 'no application name'}${holder.client_addr ? ` from ${holder.client_addr}` : ''}`;
  }

  private async ensureTable(client: pg.Client): Promise<void> {
    await client.query(`
      CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
        version     integer PRIMARY KEY,
        name        text NOT NULL,
        checksum    text NOT NULL,
        applied_at  timestamptz NOT NULL DEFAULT now(),
        duration_ms integer NOT NULL,
        applied_by  text NOT NULL
      )`);
  }

  private async readApplied(client: pg.Client): Promise<AppliedRecord[]> {
    const exists = await client.query<{ present: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS present`, [
      MIGRATIONS_TABLE,
    ]);
    if (!exists.rows[0]?.present) return [];
    const { rows } = await client.query<{
      version: number;
      name: string;
      checksum: string;
      applied_at: Date;
      applied_by: string;
      duration_ms: number;
    }>(`SELECT version, name, checksum, applied_at, applied_by, duration_ms FROM ${MIGRATIONS_TABLE} ORDER BY version`);
    return rows.map((row) => ({
      version: row.version,
      name: row.name,
      checksum: row.checksum,
      appliedAt: row.applied_at,
      appliedBy: row.applied_by,
      durationMs: row.duration_ms,
    }));
  }
}

/**
 * The newest migration applied to the database `client` is connected to, or null for a database
 * never migrated. Read on the caller's connection, so inside its transaction and snapshot (a
 * backup records the migration its dump holds).
 */
export async function newestAppliedMigration(
  client: Pick<pg.Client, 'query'>,
): Promise<{ version: number; name: string } | null> {
  const exists = await client.query<{ present: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS present`, [
    MIGRATIONS_TABLE,
  ]);
  if (!exists.rows[0]?.present) return null;
  const { rows } = await client.query<{ version: number; name: string }>(
    `SELECT version, name FROM ${MIGRATIONS_TABLE} ORDER BY version DESC LIMIT 1`,
  );
  return rows[0] ?? null;
}

function reconcile(files: MigrationFile[], applied: AppliedRecord[]): MigrationStatusEntry[] {
  const byVersion = new Map(applied.map((record) => [record.version, record]));
  const entries: MigrationStatusEntry[] = files.map((file) => {
    const record = byVersion.get(file.version);
    if (!record) return { version: file.version, id: file.id, state: 'pending', hasDown: file.downSql !== null };
    return {
      version: file.version,
      id: file.id,
      state: record.checksum === file.checksum ? 'applied' : 'changed',
      appliedAt: record.appliedAt.toISOString(),
      appliedBy: record.appliedBy,
      durationMs: record.durationMs,
      hasDown: file.downSql !== null,
    };
  });
  const fileVersions = new Set(files.map((file) => file.version));
  for (const record of applied) {
    if (fileVersions.has(record.version)) continue;
    entries.push({
      version: record.version,
      id: `${formatVersion(record.version)}_${record.name}`,
      state: 'missing',
      appliedAt: record.appliedAt.toISOString(),
      appliedBy: record.appliedBy,
      durationMs: record.durationMs,
      hasDown: false,
    });
  }
  return entries.sort((a, b) => a.version - b.version);
}

/** Throws one `MigrationHistoryError` listing every edited, missing and out-of-order migration. */
function assertHistoryMatches(files: MigrationFile[], applied: AppliedRecord[]): void {
  const problems: string[] = [];
  const byVersion = new Map(files.map((file) => [file.version, file]));
  for (const record of applied) {
    const file = byVersion.get(record.version);
    const recordId = `${formatVersion(record.version)}_${record.name}`;
    if (!file) {
      problems.push(`${recordId} is applied but has no file here (the database is ahead of this code)`);
    } else if (file.checksum !== record.checksum) {
      problems.push(
        `${file.filename} was edited after it was applied (checksum differs); restore the file and put the change in a new migration`,
      );
    }
  }
  const newestApplied = applied.at(-1)?.version ?? 0;
  const appliedVersions = new Set(applied.map((record) => record.version));
  for (const file of files) {
    if (!appliedVersions.has(file.version) && file.version < newestApplied) {
      problems.push(
        `${file.filename} is not applied but the newer ${formatVersion(newestApplied)} is; renumber it after ${formatVersion(newestApplied)}`,
      );
    }
  }
  if (problems.length === 1) throw new MigrationHistoryError(problems[0]!);
  if (problems.length > 1) throw new MigrationHistoryError(`${problems.length} problems: ${problems.join('; ')}`);
}

function planRevert(files: MigrationFile[], applied: AppliedRecord[], steps: number): MigrationFile[] {
  assertHistoryMatches(files, applied);
  if (applied.length === 0) throw new MigrationRefusedError('no migration is applied; nothing to revert');
  if (steps > applied.length) {
    throw new MigrationRefusedError(`--steps ${steps} asks for more than the ${applied.length} applied migrations`);
  }
  const byVersion = new Map(files.map((file) => [file.version, file]));
  const plan = applied
    .slice(-steps)
    .reverse()
    .map((record) => byVersion.get(record.version)!);
  const irreversible = plan.filter((file) => file.downSql === null);
  if (irreversible.length > 0) {
    throw new MigrationRefusedError(
      `cannot revert ${irreversible.map((file) => file.filename).join(', ')}: no "-- migrate:down" section; write a new migration that undoes it instead`,
    );
  }
  assertNoTransactionControl(plan, 'down');
  return plan;
}

/** Refuses, before anything runs, files that would begin, commit or roll back transactions. */
function assertNoTransactionControl(files: MigrationFile[], section: 'up' | 'down'): void {
  const offenders = files.flatMap((file) => {
    const found = file.transactionControl.filter((statement) => statement.section === section);
    if (found.length === 0) return [];
    return [`${file.filename} ${found.map((statement) => `line ${statement.line} (${statement.command})`).join(', ')}`];
  });
  if (offenders.length === 0) return;
  const what = section === 'up' ? 'apply' : 'revert';
  throw new MigrationFilesError(
    `refusing to ${what} anything: ${offenders.join('; ')} — a migration must not begin, commit or roll back transactions (the runner runs each file in one transaction with its record, and a COMMIT or ROLLBACK inside would leave it half applied); nothing was ${section === 'up' ? 'applied' : 'reverted'}`,
    'remove those statements; statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY …) go in a file of their own with a line "-- migrate:no-transaction" (see the README, Migrations)',
  );
}

/** The file ended the runner's transaction although the file check found no COMMIT/ROLLBACK/BEGIN. */
function leftTransactionError(
  migration: MigrationFile,
  direction: 'up' | 'down',
  sqlError: string | null,
  cause?: unknown,
): MigrationIncompleteError {
  const what = direction === 'up' ? 'was not recorded' : 'is still recorded as applied';
  return new MigrationIncompleteError(
    `migration ${migration.filename} ended the transaction the runner ran it in (a statement that commits or rolls back), so part or all of it may be committed, and it ${what}${sqlError ? `; then it failed: ${sqlError}` : ''}`,
    migration.filename,
    'compare the database with the file and undo or finish it by hand, remove the statement that ends the transaction, then run lmsctl migrate again',
    cause,
  );
}
