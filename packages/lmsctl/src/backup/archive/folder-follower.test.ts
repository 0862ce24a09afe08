import { appendFile, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hashFolder } from './directory.js';
import { followFolder } from './folder-follower.js';

let folder: string;

beforeEach(async () => {
  folder = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-follow-'));
});

afterEach(async () => {
  await rm(folder, { recursive: true, force: true });
});

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('checksums of a folder taken while it is written', () => {
  it('equal a full read afterwards, for files appended to across several looks and files that appear late', async () => {
    const follower = followFolder(folder);
    await writeFile(path.join(folder, '3001.dat.gz'), Buffer.alloc(3 * 1024 * 1024, 1));
    await pause(200);
    for (let step = 0; step < 4; step++) {
      await appendFile(path.join(folder, '3001.dat.gz'), Buffer.alloc(700 * 1024, step + 2));
      await appendFile(path.join(folder, '3002.dat.gz'), `rows ${step}\n`);
      await pause(170);
    }
    await writeFile(path.join(folder, 'toc.dat'), 'written once at the end');
    const followed = await follower.finish();
    expect(followed).toEqual(await hashFolder(folder));
    expect(followed.map((file) => file.name)).toEqual(['3001.dat.gz', '3002.dat.gz', 'toc.dat']);
  });

  it('refuses a file that shrank after part of it was hashed, rather than record a wrong checksum', async () => {
    const follower = followFolder(folder);
    await writeFile(path.join(folder, '3001.dat.gz'), Buffer.alloc(2 * 1024 * 1024, 1));
    await pause(400);
    await truncate(path.join(folder, '3001.dat.gz'), 10);
    await expect(follower.finish()).rejects.toThrow(/3001\.dat\.gz shrank from 2097152 to 10 bytes/);
  });
});
