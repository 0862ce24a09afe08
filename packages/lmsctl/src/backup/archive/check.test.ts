import { describe, expect, it } from 'vitest';
import { splitListing } from './check.js';

// What `pg_restore --list` prints, shortened: a header, schema entries, table data, constraints.
const LISTING = [
  ';',
  '; Archive created at 2026-12-06 01:19:31 UTC',
  ';     dbname: lms',
  ';',
  '218; 1259 16390 TABLE public users lms',
  '219; 1259 16400 TABLE public courses lms',
  '3640; 0 16390 TABLE DATA public users lms',
  '3641; 0 16400 TABLE DATA public courses lms',
  '3642; 0 16410 TABLE DATA public enrollments lms',
  '3643; 0 16420 TABLE DATA public lesson_completions lms',
  '3644; 0 16430 TABLE DATA public audit_log lms',
  '3650; 0 0 SEQUENCE SET public users_seq lms',
  '3660; 2606 16500 CONSTRAINT public users users_pkey lms',
  '',
].join('\n');

const WEIGHTS: Record<number, number> = { 3640: 10, 3641: 5, 3642: 54, 3643: 66, 3644: 4 };
const weightOf = (dumpId: number) => WEIGHTS[dumpId] ?? 1;
const dataLines = (share: string) => share.split('\n').filter((line) => line.includes(' TABLE DATA '));

describe('splitListing', () => {
  it('puts every table’s data in exactly one share, the rest of the listing in the first only', () => {
    const shares = splitListing(LISTING, 2, weightOf);
    expect(shares).toHaveLength(2);
    const allData = shares.flatMap(dataLines);
    expect(allData.sort()).toEqual(dataLines(LISTING).sort());
    expect(new Set(allData).size).toBe(5);
    for (const line of LISTING.split('\n').filter((line) => line && !line.includes(' TABLE DATA '))) {
      expect(shares[0]!.split('\n')).toContain(line);
      expect(shares[1]!.split('\n')).not.toContain(line);
    }
  });

  it('balances the shares by weight, heaviest first, and keeps the archive’s order within each', () => {
    const shares = splitListing(LISTING, 2, weightOf);
    const load = shares.map((share) =>
      dataLines(share).reduce((sum, line) => sum + weightOf(Number(line.split(';')[0])), 0),
    );
    // 66 to one share, 54 to the other, then 10 and 5 to the lighter, then 4 to the 66.
    expect(load.sort((a, b) => a - b)).toEqual([69, 70]);
    for (const share of shares) {
      const order = dataLines(share).map((line) => LISTING.indexOf(line));
      expect(order).toEqual([...order].sort((a, b) => a - b));
    }
  });

  it('makes no more shares than there are tables with data, and one when there is nothing to split', () => {
    expect(splitListing(LISTING, 8, weightOf)).toHaveLength(5);
    expect(splitListing(LISTING, 1, weightOf)).toEqual([LISTING]);
    const schemaOnly = LISTING.split('\n')
      .filter((line) => !line.includes(' TABLE DATA '))
      .join('\n');
    expect(splitListing(schemaOnly, 4, weightOf)).toEqual([schemaOnly]);
    const oneTable = LISTING.split('\n')
      .filter((line) => !line.includes(' TABLE DATA ') || line.startsWith('3640;'))
      .join('\n');
    expect(splitListing(oneTable, 4, weightOf)).toEqual([oneTable]);
  });
});
