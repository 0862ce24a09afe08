import { describe, expect, it } from 'vitest';
import { splitSqlStatements, transactionControlOf } from './sql-statements.js';

const commandsIn = (sql: string) => splitSqlStatements(sql).map(transactionControlOf);
const texts = (sql: string) => splitSqlStatements(sql).map((statement) => statement.text.trim());

describe('splitSqlStatements', () => {
  it('splits on top-level semicolons and keeps a last statement without one', () => {
    expect(texts('CREATE TABLE a (id int);\n;\nINSERT INTO a VALUES (1);\nSELECT 1')).toEqual([
      'CREATE TABLE a (id int);',
      'INSERT INTO a VALUES (1);',
      'SELECT 1',
    ]);
  });

  it('does not split inside comments, literals, quoted identifiers, dollar quotes or parentheses', () => {
    const sql = [
      "INSERT INTO t VALUES ('a;b', E'it\\'s; fine', 'it''s; fine', U&'x;y');",
      'SELECT 1 /* one; /* nested; */ still; */ AS "odd;name";',
      '-- a comment; with a semicolon',
      'CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN 1; END $body$;',
      'DO $$ BEGIN PERFORM 1; END $$;',
      'CREATE RULE r AS ON INSERT TO t DO ALSO (UPDATE t SET a = 1; UPDATE t SET b = 2);',
      'PREPARE q AS SELECT $1::int;',
    ].join('\n');
    expect(splitSqlStatements(sql)).toHaveLength(6);
  });

  it('keeps a BEGIN ATOMIC function body, CASE … END included, in one statement', () => {
    const sql = `CREATE OR REPLACE FUNCTION g(x int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;
  SELECT 2;
END;
SELECT g(1);`;
    expect(texts(sql)).toHaveLength(2);
    expect(commandsIn(sql)).toEqual([null, null]);
  });

  it('gives each statement its offset and the offset of its first token', () => {
    const sql = 'SELECT 1;\n-- note\n  COMMIT;';
    const [, second] = splitSqlStatements(sql);
    expect(second!.start).toBe(9);
    expect(sql.slice(second!.firstTokenAt)).toBe('COMMIT;');
  });
});

describe('transactionControlOf', () => {
  it('names every statement that begins, ends or aborts a transaction', () => {
    const sql = [
      'BEGIN;',
      'begin work;',
      'START TRANSACTION ISOLATION LEVEL SERIALIZABLE;',
      'COMMIT;',
      'commit and chain;',
      'END;',
      'ROLLBACK;',
      'rollback transaction;',
      'ABORT;',
      "PREPARE TRANSACTION 'x';",
      "COMMIT PREPARED 'x';",
      "ROLLBACK PREPARED 'x';",
    ].join('\n');
    expect(commandsIn(sql)).toEqual([
      'BEGIN',
      'BEGIN',
      'START TRANSACTION',
      'COMMIT',
      'COMMIT',
      'END',
      'ROLLBACK',
      'ROLLBACK',
      'ABORT',
      'PREPARE TRANSACTION',
      'COMMIT PREPARED',
      'ROLLBACK PREPARED',
    ]);
  });

  it('leaves savepoints, prepared statements and the words inside other statements alone', () => {
    const sql = [
      'SAVEPOINT s;',
      'ROLLBACK TO SAVEPOINT s;',
      'ROLLBACK WORK TO s;',
      'RELEASE s;',
      'PREPARE commit_plan AS SELECT 1;',
      "SELECT 'COMMIT;';",
      '/* ROLLBACK; */ SELECT 1;',
      'CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;',
      "COMMENT ON TABLE t IS 'END';",
      'SELECT 1 AS "begin";',
    ].join('\n');
    expect(commandsIn(sql)).toEqual(Array.from({ length: 10 }, () => null));
  });
});
