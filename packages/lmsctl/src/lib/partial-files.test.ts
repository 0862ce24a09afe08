import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partialPathOf, removeStalePartials } from './partial-files.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-partials-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('temporary files', () => {
  it("removes only this host's files of processes that are gone", async () => {
    const mine = partialPathOf(path.join(dir, '.lms_20261128_120000.dump'));
    // No process has this pid (above the kernel's pid_max limit of 2^22).
    const deadPid = 2 ** 22 + 7;
    const deadHere = mine.replace(`.${process.pid}.partial`, `.${deadPid}.partial`);
    const otherHost = path.join(dir, `.lms_20261128_120000.dump.another-host.${deadPid}.partial`);
    for (const file of [mine, deadHere, otherHost]) await writeFile(file, '');

    expect(await removeStalePartials(dir)).toEqual([path.basename(deadHere)]);
    expect((await readdir(dir)).sort()).toEqual([path.basename(otherHost), path.basename(mine)].sort());
  });
});
