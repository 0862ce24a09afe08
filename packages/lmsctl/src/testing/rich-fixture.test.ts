import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connectClient } from '@lms/core';
import { createTestDatabase, type TestDatabase } from '@lms/core/testing';
import {
  RICH_FIXTURE_DEFAULT_ROWS,
  createRichFixture,
  describeSchema,
  fingerprintTables,
  nextSequenceValues,
} from './rich-fixture.js';

const ROWS = RICH_FIXTURE_DEFAULT_ROWS;
const MD5_OF_NOTHING = 'd41d8cd98f00b204e9800998ecf8427e';

/** Read-only checks share one fixture; tests that change data get their own database. */
let shared: TestDatabase | undefined;
const ownDatabases: TestDatabase[] = [];

beforeAll(async () => {
  shared = await createTestDatabase('rich_fixture');
  await createRichFixture(shared.url);
});

afterAll(async () => {
  await shared?.drop();
});

afterEach(async () => {
  await Promise.all(ownDatabases.splice(0).map((database) => database.drop()));
});

function sharedUrl(): string {
  if (!shared) throw new Error('beforeAll did not create the shared database');
  return shared.url;
}

async function ownFixture(rows: number): Promise<TestDatabase> {
  const database = await createTestDatabase('rich_fixture_own');
  ownDatabases.push(database);
  await createRichFixture(database.url, { rows });
  return database;
}

async function execute<T extends Record<string, unknown>>(url: string, sql: string): Promise<T[]> {
  const client = await connectClient(url, { applicationName: 'lms-tests' });
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

describe('rich fixture', () => {
  it('fingerprints every ordinary table, partitions and unlogged ones included, with the expected row counts', async () => {
    const fingerprints = await fingerprintTables(sharedUrl());

    // Partitioned parent, view and materialized view are absent; leaves and the unlogged table are there.
    expect(Object.keys(fingerprints).sort()).toEqual(
      [
        'public.session_cache',
        'public.users',
        'shop.events_2023',
        'shop.events_2024',
        'shop.events_default',
        'shop.order_audit',
        'shop.order_items',
        'shop.orders',
        'shop.products',
        'shop.wishlists',
        'Ünïcode Schema.Tëst Tåble',
      ].sort(),
    );
    for (const fingerprint of Object.values(fingerprints)) expect(fingerprint.md5).toMatch(/^[0-9a-f]{32}$/);

    expect(fingerprints['public.users']?.rows).toBe(ROWS);
    expect(fingerprints['shop.products']?.rows).toBe(ROWS);
    expect(fingerprints['shop.orders']?.rows).toBe(ROWS);
    expect(fingerprints['shop.order_items']?.rows).toBe(2 * ROWS);
    expect(fingerprints['public.session_cache']?.rows).toBe(5);
    expect(fingerprints['Ünïcode Schema.Tëst Tåble']?.rows).toBe(25);
    expect(fingerprints['shop.wishlists']).toEqual({ rows: 0, md5: MD5_OF_NOTHING });
    expect(fingerprints['shop.events_default']).toEqual({ rows: 0, md5: MD5_OF_NOTHING });
    const events2023 = fingerprints['shop.events_2023']!.rows;
    const events2024 = fingerprints['shop.events_2024']!.rows;
    expect(events2023).toBeGreaterThan(0);
    expect(events2024).toBeGreaterThan(0);
    expect(events2023 + events2024).toBe(ROWS);
  });

  it('gives identical fingerprints, descriptions and sequence positions when read twice', async () => {
    const url = sharedUrl();
    expect(await fingerprintTables(url)).toEqual(await fingerprintTables(url));
    expect(await describeSchema(url)).toEqual(await describeSchema(url));
    expect(await nextSequenceValues(url)).toEqual(await nextSequenceValues(url));
  });

  it('describes the schema objects a restore has to bring back', async () => {
    const schema = await describeSchema(sharedUrl());

    expect(schema.schemas).toEqual(['public', 'shop', 'Ünïcode Schema']);
    expect(schema.enums).toEqual([
      { name: 'shop.order_status', labels: ['pending', 'paid', 'shipped', 'on hold', 'refunded', 'cancelled'] },
    ]);
    expect(schema.materializedViews).toEqual([
      expect.objectContaining({ name: 'shop.order_status_totals', populated: true, rows: 6 }),
    ]);
    expect(schema.tables).toContainEqual(
      expect.objectContaining({ name: 'public.session_cache', persistence: 'unlogged' }),
    );
    expect(schema.tables).toContainEqual(
      expect.objectContaining({ name: 'shop.events', kind: 'partitioned table', partitionKey: 'RANGE (occurred_on)' }),
    );
    expect(schema.constraints).toContainEqual(
      expect.objectContaining({
        name: 'orders_notes_short',
        definition: 'CHECK (char_length(notes) < 1000) NOT VALID',
      }),
    );
    expect(schema.comments).toContainEqual(expect.objectContaining({ object: 'column status of table shop.orders' }));
    expect(schema.comments).toContainEqual(expect.objectContaining({ object: 'table public.users' }));
    expect(schema.functions).toHaveLength(4);
    expect(schema.triggers).toHaveLength(2);
  });

  it('changes exactly one md5 when one byte of one row changes, and restores it when the byte is put back', async () => {
    const database = await ownFixture(30);
    const before = await fingerprintTables(database.url);
    expect(before['public.users']?.rows).toBe(30);
    expect(before['shop.order_items']?.rows).toBe(60);

    const flipByte = `
      UPDATE "Ünïcode Schema"."Tëst Tåble" SET "Bïnär" = set_byte("Bïnär", 3, get_byte("Bïnär", 3) # 1)
      WHERE "Ïd" = 2
    `;
    await execute(database.url, flipByte);
    const after = await fingerprintTables(database.url);

    const table = 'Ünïcode Schema.Tëst Tåble';
    expect(after[table]?.rows).toBe(before[table]?.rows);
    expect(after[table]?.md5).not.toBe(before[table]?.md5);
    expect({ ...after, [table]: undefined }).toEqual({ ...before, [table]: undefined });

    // The UPDATE moved the row physically; the fingerprint sorts, so only content counts.
    await execute(database.url, flipByte);
    expect(await fingerprintTables(database.url)).toEqual(before);
  });

  it('predicts every sequence’s next value without consuming it', async () => {
    const database = await ownFixture(30);
    const predicted = await nextSequenceValues(database.url);
    expect(await nextSequenceValues(database.url)).toEqual(predicted);

    expect(predicted).toMatchObject({
      'shop.invoice_number_seq': 1015, // INCREMENT BY 5 START 1000, advanced three times
      'shop.countdown_seq': 94, // INCREMENT BY -3 START 100, advanced twice
      'public.ticket_seq': 42, // setval(…, 42, false)
      'shop.wishlists_id_seq': 100, // identity never used
      'public.users_id_seq': 32, // 30 users and the deleted one
      'shop.orders_id_seq': 33, // serial: 30 orders and the deleted user's two
      'Ünïcode Schema.Tëst Tåble_Ïd_seq': 27,
    });

    const drawn = await execute<{ name: string; value: string }>(
      database.url,
      `SELECT schemaname || '.' || sequencename AS name,
              nextval(format('%I.%I', schemaname, sequencename)::regclass)::text AS value
       FROM pg_sequences`,
    );
    expect(Object.fromEntries(drawn.map((row) => [row.name, Number(row.value)]))).toEqual(predicted);
  });

  it('refuses too few rows to place every special value', async () => {
    await expect(createRichFixture(sharedUrl(), { rows: 5 })).rejects.toThrow(RangeError);
  });
});
