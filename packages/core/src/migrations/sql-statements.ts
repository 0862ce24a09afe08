/**
 * Splits a SQL script into its top-level statements the way psql's lexer does: semicolons inside
 * comments (`--`, nested `/* *\/`), string literals (`'…'`, `E'…'`), quoted identifiers, dollar-quoted
 * bodies (`$$…$$`, `$tag$…$tag$`), parentheses and the `BEGIN ATOMIC … END` body of a
 * `CREATE [OR REPLACE] FUNCTION|PROCEDURE` do not end a statement.
 */

export interface SqlStatement {
  /** The statement's text, from just after the previous statement up to and including its `;`. */
  text: string;
  /** Offset of `text` in the script. */
  start: number;
  /** Offset of the statement's first token (after leading space and comments) in the script. */
  firstTokenAt: number;
  /**
   * The statement's first tokens: unquoted words lower-cased, any other token as one character
   * (`'` a string literal, `"` a quoted identifier, `$` a dollar-quoted body, else the character).
   */
  leading: string[];
}

const LEADING_TOKENS = 4;
const IDENT_START = /[A-Za-z_\u0080-\uffff]/;
const IDENT_CONT = /[A-Za-z0-9_$\u0080-\uffff]/;
const DOLLAR_QUOTE = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/y;

/** Top-level statements of `sql`; a trailing statement without `;` is included, empty ones are not. */
export function splitSqlStatements(sql: string): SqlStatement[] {
  const statements: SqlStatement[] = [];
  let start = 0;
  let firstTokenAt = -1;
  let leading: string[] = [];
  let words: string[] = [];
  let parenDepth = 0;
  let beginDepth = 0;
  let i = 0;

  const token = (value: string) => {
    if (firstTokenAt === -1) firstTokenAt = i;
    if (leading.length < LEADING_TOKENS) leading.push(value);
  };
  const finish = (end: number) => {
    if (firstTokenAt !== -1) statements.push({ text: sql.slice(start, end), start, firstTokenAt, leading });
    start = end;
    firstTokenAt = -1;
    leading = [];
    words = [];
    parenDepth = 0;
    beginDepth = 0;
  };
  // psql's heuristic: only in CREATE [OR REPLACE] FUNCTION|PROCEDURE does BEGIN open a block.
  const inRoutineDefinition = () =>
    words[0] === 'create' &&
    (words[1] === 'function' ||
      words[1] === 'procedure' ||
      (words[1] === 'or' && words[2] === 'replace' && (words[3] === 'function' || words[3] === 'procedure')));

  while (i < sql.length) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? sql.length : end + 1;
    } else if (c === '/' && next === '*') {
      i = skipBlockComment(sql, i);
    } else if (/\s/.test(c)) {
      i++;
    } else if (c === "'") {
      token("'");
      i = skipQuoted(sql, i, "'", false);
    } else if (c === '"') {
      token('"');
      i = skipQuoted(sql, i, '"', false);
    } else if (c === '$') {
      DOLLAR_QUOTE.lastIndex = i;
      const delimiter = DOLLAR_QUOTE.exec(sql)?.[0];
      token('$');
      if (delimiter) {
        const end = sql.indexOf(delimiter, i + delimiter.length);
        i = end === -1 ? sql.length : end + delimiter.length;
      } else {
        // `$1` (a parameter) or a lone `$`.
        i++;
        while (i < sql.length && /[0-9]/.test(sql[i]!)) i++;
      }
    } else if (IDENT_START.test(c)) {
      let end = i + 1;
      while (end < sql.length && IDENT_CONT.test(sql[end]!)) end++;
      const word = sql.slice(i, end).toLowerCase();
      // E'…' takes backslash escapes (E'it\'s'); U&'…', B'…' and X'…' are ordinary literals.
      if (word === 'e' && sql[end] === "'") {
        token("'");
        i = skipQuoted(sql, end, "'", true);
        continue;
      }
      token(word);
      if (words.length < LEADING_TOKENS) words.push(word);
      if (parenDepth === 0 && inRoutineDefinition()) {
        if (word === 'begin') beginDepth++;
        // CASE also ends with END; it only matters inside a BEGIN ATOMIC body.
        else if (word === 'case' && beginDepth > 0) beginDepth++;
        else if (word === 'end' && beginDepth > 0) beginDepth--;
      }
      i = end;
    } else if (c === ';' && parenDepth === 0 && beginDepth === 0) {
      i++;
      finish(i);
    } else {
      token(c);
      if (c === '(') parenDepth++;
      else if (c === ')') parenDepth = Math.max(0, parenDepth - 1);
      i++;
    }
  }
  finish(sql.length);
  return statements;
}

/** Index just past the block comment opening at `at`; PostgreSQL's block comments nest. */
function skipBlockComment(sql: string, at: number): number {
  let depth = 0;
  let i = at;
  while (i < sql.length) {
    if (sql[i] === '/' && sql[i + 1] === '*') {
      depth++;
      i += 2;
    } else if (sql[i] === '*' && sql[i + 1] === '/') {
      depth--;
      i += 2;
      if (depth === 0) return i;
    } else {
      i++;
    }
  }
  return sql.length;
}

/** Index just past the literal opening at `at` (a doubled quote is one quote; E'' strings also take `\'`). */
function skipQuoted(sql: string, at: number, quote: string, backslashEscapes: boolean): number {
  let i = at + 1;
  while (i < sql.length) {
    const c = sql[i];
    if (backslashEscapes && c === '\\') {
      i += 2;
    } else if (c === quote) {
      if (sql[i + 1] === quote) i += 2;
      else return i + 1;
    } else {
      i++;
    }
  }
  return sql.length;
}

/**
 * The transaction-control command a statement is (`COMMIT`, `ROLLBACK`, `BEGIN`, `END`,
 * `START TRANSACTION`, `ABORT`, `PREPARE TRANSACTION`, `COMMIT PREPARED`, `ROLLBACK PREPARED`),
 * or null. `SAVEPOINT`, `RELEASE` and `ROLLBACK TO` stay inside the transaction and are not.
 */
export function transactionControlOf(statement: Pick<SqlStatement, 'leading'>): string | null {
  const [first, second, third] = statement.leading;
  switch (first) {
    case 'begin':
    case 'end':
    case 'abort':
      return first.toUpperCase();
    case 'start':
      return second === 'transaction' ? 'START TRANSACTION' : null;
    case 'commit':
      return second === 'prepared' ? 'COMMIT PREPARED' : 'COMMIT';
    case 'rollback': {
      const after = second === 'work' || second === 'transaction' ? third : second;
      if (after === 'to') return null;
      return after === 'prepared' ? 'ROLLBACK PREPARED' : 'ROLLBACK';
    }
    case 'prepare':
      return second === 'transaction' && third === "'" ? 'PREPARE TRANSACTION' : null;
    default:
      return null;
  }
}

/** 1-based line of the character at `offset`. */
export function lineAt(sql: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < sql.length; i++) if (sql[i] === '\n') line++;
  return line;
}
