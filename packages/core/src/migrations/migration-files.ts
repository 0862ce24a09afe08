import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppError, ValidationError } from '../errors.js';
import { lineAt, splitSqlStatements, transactionControlOf } from './sql-statements.js';

/** The project's own migrations, shipped with core (works from `src/` and from `dist/`). */
export const defaultMigrationsDir = fileURLToPath(new URL('../../migrations', import.meta.url));

export const MIGRATION_FILE_PATTERN = /^(\d{4})_([a-z0-9]+(?:_[a-z0-9]+)*)\.sql$/;
/** A line that separates the forward SQL from the optional reverting SQL. */
const DOWN_MARKER = /^--[ \t]*migrate:down[ \t]*$/m;
/** A line that makes the whole file (up and down) run outside a transaction, one statement at a time. */
const NO_TRANSACTION_MARKER = /^--[ \t]*migrate:no-transaction[ \t]*$/gm;
/**
 * A line that says the file contracts the schema: it drops or renames what the previous version of
 * the application may still use, so it must not run while that version serves (expand/contract).
 */
const CONTRACT_MARKER = /^--[ \t]*migrate:contract[ \t]*$/m;

/** A statement that begins, ends or aborts a transaction, found in a migration file. */
export interface TransactionControlStatement {
  section: 'up' | 'down';
  /** 1-based line of the file. */
  line: number;
  /** e.g. `COMMIT`, `ROLLBACK`, `BEGIN`. */
  command: string;
}

export interface MigrationFile {
  version: number;
  /** `0003_enrollments`, the file name without `.sql`. */
  id: string;
  name: string;
  filename: string;
  path: string;
  upSql: string;
  /** null when the file has no (or an empty) `-- migrate:down` section. */
  downSql: string | null;
  /** 1-based line of the file where the down SQL starts (for error positions). */
  downStartLine: number;
  /** sha256 of the file with line endings normalised, so a Windows checkout matches. */
  checksum: string;
  /** False when the file says `-- migrate:no-transaction`: each statement then commits on its own. */
  transactional: boolean;
  /** Top-level BEGIN/COMMIT/ROLLBACK/END… statements; the runner refuses to run a file that has any. */
  transactionControl: TransactionControlStatement[];
  /** True when the file says `-- migrate:contract` (above `-- migrate:down`). */
  contract: boolean;
  /** Forward statements that drop or rename a table, view or column (what contracts a schema). */
  contractStatements: ContractStatement[];
}

/** A forward statement that removes or renames something a running version may use. */
export interface ContractStatement {
  /** 1-based line of the file. */
  line: number;
  /** e.g. `DROP TABLE`, `DROP COLUMN`, `RENAME`. */
  kind: string;
}

export class MigrationFilesError extends AppError {
  constructor(
    message: string,
    /** What to do about it (lmsctl prints it on a line of its own). */
    readonly hint?: string,
  ) {
    super(message, { code: 'migration_files_invalid', exitCode: 1 });
  }
}

export function checksumOf(content: string): string {
  return createHash('sha256').update(content.replace(/\r\n/g, '\n'), 'utf8').digest('hex');
}

export function formatVersion(version: number): string {
  return String(version).padStart(4, '0');
}

/** Parses one migration file's text into its forward and reverting parts. */
export function parseMigration(filename: string, filePath: string, content: string): MigrationFile {
  const match = MIGRATION_FILE_PATTERN.exec(filename);
  if (!match) {
    throw new MigrationFilesError(
      `${filename}: migration files are named NNNN_snake_case_name.sql (four-digit version), e.g. 0007_add_badges.sql`,
    );
  }
  const normalised = content.replace(/\r\n/g, '\n');
  const markers = normalised.match(new RegExp(DOWN_MARKER.source, 'gm')) ?? [];
  if (markers.length > 1) {
    throw new MigrationFilesError(`${filename}: has ${markers.length} "-- migrate:down" lines; keep exactly one`);
  }
  const markerAt = normalised.search(DOWN_MARKER);
  const upSql = markerAt === -1 ? normalised : normalised.slice(0, markerAt);
  const downPart = markerAt === -1 ? '' : normalised.slice(markerAt).replace(DOWN_MARKER, '');
  const downStartLine = markerAt === -1 ? 0 : normalised.slice(0, markerAt).split('\n').length;
  const noTransactionMarkers = [...normalised.matchAll(NO_TRANSACTION_MARKER)];
  if (noTransactionMarkers.length > 1) {
    throw new MigrationFilesError(
      `${filename}: has ${noTransactionMarkers.length} "-- migrate:no-transaction" lines; keep one, above "-- migrate:down"`,
    );
  }
  if (markerAt !== -1 && noTransactionMarkers.some((marker) => marker.index > markerAt)) {
    throw new MigrationFilesError(
      `${filename}: move "-- migrate:no-transaction" above "-- migrate:down"; it applies to the whole file`,
    );
  }
  const contractAt = upSql.search(CONTRACT_MARKER);
  if (contractAt === -1 && markerAt !== -1 && CONTRACT_MARKER.test(downPart)) {
    throw new MigrationFilesError(
      `${filename}: move "-- migrate:contract" above "-- migrate:down"; it describes the forward change`,
    );
  }
  return {
    version: Number(match[1]),
    id: `${match[1]}_${match[2]}`,
    name: match[2]!,
    filename,
    path: filePath,
    upSql,
    downSql: hasStatements(downPart) ? downPart : null,
    downStartLine,
    checksum: checksumOf(content),
    transactional: noTransactionMarkers.length === 0,
    transactionControl: [
      ...findTransactionControl(upSql, 'up', 1),
      ...findTransactionControl(downPart, 'down', downStartLine),
    ],
    contract: contractAt !== -1,
    contractStatements: findContractStatements(upSql),
  };
}

// Comments and literals removed first, so `-- drop table later` or a string never counts.
const COMMENTS_AND_LITERALS = /--[^\n]*|\/\*[\s\S]*?\*\/|'(?:[^']|'')*'|"(?:[^"]|"")*"|\$([A-Za-z_]*)\$[\s\S]*?\$\1\$/g;
const CONTRACTING: Array<[kind: string, pattern: RegExp]> = [
  ['DROP TABLE', /^\s*drop\s+table\b/i],
  ['DROP VIEW', /^\s*drop\s+(?:materialized\s+)?view\b/i],
  ['DROP SCHEMA', /^\s*drop\s+schema\b/i],
  ['RENAME', /^\s*alter\s+(?:table|view|materialized\s+view)\b[\s\S]*\brename\s+(?!constraint\b)/i],
  // DROP [COLUMN] name — not DROP DEFAULT / NOT NULL / CONSTRAINT / IDENTITY / EXPRESSION, which
  // the running version does not read.
  [
    'DROP COLUMN',
    /^\s*alter\s+table\b[\s\S]*\bdrop\s+(?!(?:default|not\s+null|constraint|identity|expression)\b)(?:column\s+)?(?:if\s+exists\s+)?[a-z_"]/i,
  ],
];

function findContractStatements(sql: string): ContractStatement[] {
  return splitSqlStatements(sql).flatMap((statement) => {
    const text = statement.text.replace(COMMENTS_AND_LITERALS, ' ');
    const found = CONTRACTING.find(([, pattern]) => pattern.test(text));
    return found ? [{ line: lineAt(sql, statement.firstTokenAt), kind: found[0] }] : [];
  });
}

function findTransactionControl(
  sql: string,
  section: TransactionControlStatement['section'],
  firstLine: number,
): TransactionControlStatement[] {
  return splitSqlStatements(sql).flatMap((statement) => {
    const command = transactionControlOf(statement);
    return command ? [{ section, line: firstLine + lineAt(sql, statement.firstTokenAt) - 1, command }] : [];
  });
}

/** True when the SQL holds something other than whitespace and comments. */
export function hasStatements(sql: string): boolean {
  return (
    sql
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/--.*$/gm, '')
      .trim().length > 0
  );
}

/** Reads every migration in `dir`, ordered by version; rejects misnamed files and duplicates. */
export async function readMigrationFiles(dir: string): Promise<MigrationFile[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new MigrationFilesError(`migrations folder not found: ${dir}`);
    }
    throw error;
  }
  const migrations: MigrationFile[] = [];
  for (const filename of entries.filter((entry) => entry.toLowerCase().endsWith('.sql')).sort()) {
    const filePath = path.join(dir, filename);
    migrations.push(parseMigration(filename, filePath, await readFile(filePath, 'utf8')));
  }
  const seen = new Map<number, string>();
  for (const migration of migrations) {
    const previous = seen.get(migration.version);
    if (previous) {
      throw new MigrationFilesError(
        `${previous} and ${migration.filename} share version ${formatVersion(migration.version)}; renumber one of them`,
      );
    }
    seen.set(migration.version, migration.filename);
  }
  return migrations.sort((a, b) => a.version - b.version);
}

/** `Add badges` / `add-badges` / `addBadges` → `add_badges`; rejects what cannot become a file name. */
export function toMigrationName(raw: string): string {
  const name = raw
    .trim()
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .replace(/[\s-]+/g, '_')
    .replace(/_+/g, '_')
    .replace(/^_|_$/g, '');
  if (!/^[a-z0-9]+(?:_[a-z0-9]+)*$/.test(name)) {
    throw new ValidationError(
      `migration name "${raw}" must use letters, digits, spaces, - or _ only (e.g. add_course_tags)`,
    );
  }
  if (name.length > 80) throw new ValidationError('migration name is longer than 80 characters; shorten it');
  return name;
}

/** Writes the next-numbered empty migration and returns its path. */
export async function createMigrationFile(dir: string, rawName: string): Promise<MigrationFile> {
  const name = toMigrationName(rawName);
  await mkdir(dir, { recursive: true });
  const existing = await readMigrationFiles(dir);
  const version = (existing.at(-1)?.version ?? 0) + 1;
  if (version > 9999) throw new MigrationFilesError('no four-digit version left after 9999');
  const filename = `${formatVersion(version)}_${name}.sql`;
  const filePath = path.join(dir, filename);
  const content = [
    `-- ${formatVersion(version)} ${name.replace(/_/g, ' ')}`,
    '-- Runs in one transaction together with its record in schema_migrations: no BEGIN/COMMIT here.',
    '-- For statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY), use a file of',
    '-- their own with a line "-- migrate:no-transaction" (see the README, Migrations).',
    '',
    '',
    '-- migrate:down',
    '-- SQL that reverts the change (optional; without it `migrate down` refuses this migration).',
    '',
  ].join('\n');
  // 'wx' fails instead of overwriting when two people create the same version at once.
  await writeFile(filePath, content, { flag: 'wx' });
  return parseMigration(filename, filePath, content);
}
