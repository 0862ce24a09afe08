import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient } from './db.js';
import { maybeOne, one } from './query-result.js';
import { createTestDatabase, type TestDatabase } from './testing/index.js';

let database: TestDatabase;
let client: pg.Client;

beforeAll(async () => {
  database = await createTestDatabase('core_rows');
  client = await connectClient(database.url);
  await client.query('CREATE TABLE things (id int PRIMARY KEY, name text NOT NULL)');
});

afterAll(async () => {
  await client.end();
  await database.drop();
});

describe('one and maybeOne', () => {
  it('one returns the row a statement returned, and fails as an internal error naming the statement when none came', async () => {
    expect(one(await client.query<{ id: number }>(`INSERT INTO things VALUES (1, 'a') RETURNING id`))).toEqual({
      id: 1,
    });
    const empty = await client.query<{ id: number }>(`UPDATE things SET name = 'b' WHERE id = 2 RETURNING id`);
    expect(() => one(empty)).toThrow('UPDATE returned no row where one was expected');
    expect(() => one(empty)).toThrow(expect.objectContaining({ status: 500, code: 'internal_error' }));
  });

  it('maybeOne returns the row, or undefined when the query found none', async () => {
    expect(maybeOne(await client.query(`SELECT id, name FROM things WHERE id = 1`))).toEqual({ id: 1, name: 'a' });
    expect(maybeOne(await client.query(`SELECT id, name FROM things WHERE id = 99`))).toBeUndefined();
  });
});
