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

  it('keeps the files of a live process and removes those an earlier process with this pid left', async () => {
    const sub = await mkdtemp(path.join(dir, 'pid-reuse-'));
    const mine = partialPathOf(path.join(sub, '.lms_20261128_130000.dump'));
    // The parent (vitest's main process) is alive while this test runs.
    const live = mine.replace(`.${process.pid}.partial`, `.${process.ppid}.partial`);
    // Same host and pid, but a name this process never handed out: a container's earlier run.
    const earlier = path.join(sub, path.basename(mine).replace('130000', '110000'));
    for (const file of [mine, live, earlier]) await writeFile(file, '');

    expect(await removeStalePartials(sub)).toEqual([path.basename(earlier)]);
    expect((await readdir(sub)).sort()).toEqual([path.basename(live), path.basename(mine)].sort());
  });
});
