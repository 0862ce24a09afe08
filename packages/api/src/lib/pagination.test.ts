import { ValidationError } from '@lms/core';
import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor } from './pagination.js';

const id = '0b6f7c3e-3f1a-4c52-9d7e-2a1b3c4d5e6f';
const forge = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('decodeCursor', () => {
  it('reads back what the API hands out, to the microsecond, and the millisecond cursors made before', () => {
    for (const at of ['2026-12-04T22:05:28.123456Z', '2026-12-04T22:05:28.123Z', '2024-02-29T23:59:59Z']) {
      expect(decodeCursor(encodeCursor({ at, id }))).toEqual({ at, id });
    }
    expect(decodeCursor(undefined)).toBeNull();
    expect(decodeCursor('')).toBeNull();
  });

  it('refuses, as a 400, every cursor PostgreSQL would refuse or read differently', () => {
    const forged = [
      // Date.parse reads all of these; PostgreSQL refuses them or reads them otherwise (22007/22008).
      ['2020', id],
      ['Tue, 01 Jan 2030 00:00:00 GMT', id],
      ['+275760-09-13T00:00:00.000Z', id],
      ['-000001-01-01T00:00:00.000Z', id],
      ['2021-02-29T00:00:00Z', id],
      ['2021-04-31T00:00:00Z', id],
      ['2021-01-01T24:00:00Z', id],
      ['2021-01-01T23:60:00Z', id],
      ['0000-01-01T00:00:00Z', id],
      ['2021-01-01T00:00:00.1234567Z', id],
      ['2021-01-01T00:00:00.000000Z\u0000', id],
      // 36 hex characters are not a UUID (22P02).
      ['2021-01-01T00:00:00Z', 'a'.repeat(36)],
      ['2021-01-01T00:00:00Z', 42],
      ['2021-01-01T00:00:00Z', id, 'extra'],
      [null, id],
      { at: '2021-01-01T00:00:00Z', id },
      '2021-01-01T00:00:00Z',
    ].map(forge);
    for (const cursor of [...forged, 'not base64!', '%00', 'AAAA', forge(null).slice(1)]) {
      expect(() => decodeCursor(cursor), cursor).toThrow(ValidationError);
    }
  });
});
