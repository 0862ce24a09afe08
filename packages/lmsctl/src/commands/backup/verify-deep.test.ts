import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@lms/core/testing';
import { generateBackupKeyHex } from '../../backup/archive/crypto.js';
import { manifestPathOf, setChecksum, signManifest, type BackupManifest } from '../../backup/archive/manifest.js';
import { readVerification } from '../../backup/archive/store.js';
import { seedLmsDatabase } from '../../testing/backup-fixtures.js';
import { testContext } from '../../testing/context.js';
import { runLmsctl } from '../../testing/run-cli.js';
import { backup } from '../../backup/create.js';
import type { StatusItem } from '../../health/probes.js';
import { check } from '../check.js';
import { backupList } from './list.js';
import { backupVerify } from './verify.js';

/**
 * `backup verify --deep`: pg_restore reads every data block, so damage that a consistent
 * manifest hides from the plain verification (which reads the table of contents) is found.
 */
let database: TestDatabase;
let work: string;
let keyFile: string;

beforeAll(async () => {
  database = await createTestDatabase('verify_deep');
  await seedLmsDatabase(database.url, { users: 3000 });
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-verify-deep-'));
  keyFile = path.join(work, 'backup.key');
  await writeFile(keyFile, generateBackupKeyHex(), { mode: 0o600 });
});

afterAll(async () => {
  await database.drop();
  await rm(work, { recursive: true, force: true });
});

async function freshDir(name: string): Promise<string> {
  const dir = path.join(work, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

const envOf = (dir: string, extra: Record<string, string> = {}) => ({
  DATABASE_URL: database.url,
  LMS_BACKUP_DIR: dir,
  LMS_DRILL_DIR: path.join(dir, 'drills'),
  ...extra,
});
const contextOf = (dir: string, extra: Record<string, string> = {}) =>
  testContext({ cwd: work, env: envOf(dir, extra) }).ctx;

async function readManifestFile(dumpPath: string): Promise<BackupManifest> {
  return JSON.parse(await readFile(manifestPathOf(dumpPath), 'utf8')) as BackupManifest;
}

/** Rewrites a manifest to describe the bytes as they now are, re-signed with the plain digest anyone can compute. */
async function resign(dumpPath: string, change: (body: Omit<BackupManifest, 'signature'>) => void): Promise<void> {
  const { signature: _signature, ...body } = await readManifestFile(dumpPath);
  change(body);
  await writeFile(manifestPathOf(dumpPath), JSON.stringify(signManifest(body)));
}

const sha256Of = async (file: string) =>
  createHash('sha256')
    .update(await readFile(file))
    .digest('hex');

describe('backup verify --deep', () => {
  it('a directory dump with one data file truncated and the manifest re-signed passes plain verify, fails --deep (exit 3)', async () => {
    const dir = await freshDir('directory-truncated');
    const made = await backup(contextOf(dir), { jobs: 2 });
    const manifest = await readManifestFile(made.file);
    const biggest = [...manifest.files!].sort((a, b) => b.sizeBytes - a.sizeBytes)[0]!;
    const data = path.join(made.file, biggest.name);
    await truncate(data, Math.floor(biggest.sizeBytes / 2));
    const sha256 = await sha256Of(data);
    const sizeBytes = (await stat(data)).size;
    await resign(made.file, (body) => {
      body.files = body.files!.map((file) => (file.name === biggest.name ? { ...file, sha256, sizeBytes } : file));
      body.sha256 = setChecksum(body.files);
      body.sizeBytes = body.files.reduce((sum, file) => sum + file.sizeBytes, 0);
    });

    const plain = await runLmsctl(['backup', 'verify', 'latest'], { env: envOf(dir), cwd: work });
    expect(plain.exitCode, plain.stderr).toBe(0);
    const deep = await runLmsctl(['backup', 'verify', 'latest', '--deep'], { env: envOf(dir), cwd: work });
    expect(deep.exitCode, deep.stderr).toBe(3);
    expect(deep.stderr).toContain('pg_restore could not read every data block');
    const listed = (await backupList(contextOf(dir))).backups[0]!;
    expect(listed).toMatchObject({ verification: 'failed', deepVerifiedAt: null });
    expect(listed.verificationDetail).toContain('pg_restore could not read every data block');
  });

  it('split over two pg_restore processes (--jobs 2), damage in the second one’s share fails it too', async () => {
    const dir = await freshDir('directory-second-share');
    const made = await backup(contextOf(dir), { jobs: 2 });
    const manifest = await readManifestFile(made.file);
    // The heaviest table's data goes to the first process, the next heaviest to the second:
    // its middle is overwritten (the size stays, so the split stays).
    const [, secondBiggest] = [...manifest.files!]
      .filter((file) => file.name !== 'toc.dat')
      .sort((a, b) => b.sizeBytes - a.sizeBytes);
    const data = path.join(made.file, secondBiggest!.name);
    const bytes = await readFile(data);
    bytes.fill(0xff, Math.floor(bytes.length / 2), Math.floor(bytes.length / 2) + 256);
    await writeFile(data, bytes);
    const sha256 = await sha256Of(data);
    const sizeBytes = (await stat(data)).size;
    await resign(made.file, (body) => {
      body.files = body.files!.map((file) =>
        file.name === secondBiggest!.name ? { ...file, sha256, sizeBytes } : file,
      );
      body.sha256 = setChecksum(body.files);
      body.sizeBytes = body.files.reduce((sum, file) => sum + file.sizeBytes, 0);
    });

    await expect(backupVerify(contextOf(dir), 'latest')).resolves.toMatchObject({ ok: true, deep: false });
    await expect(backupVerify(contextOf(dir), 'latest', { deep: true, jobs: 2 })).rejects.toMatchObject({
      exitCode: 3,
      message: expect.stringContaining('pg_restore could not read every data block'),
    });
    const alone = await runLmsctl(['backup', 'verify', 'latest', '--jobs', '2'], { env: envOf(dir), cwd: work });
    expect(alone.exitCode).toBe(2);
    expect(alone.stderr).toContain('it goes with --deep');
  });

  it('a single-file dump cut short and re-signed passes plain verify, fails --deep', async () => {
    const dir = await freshDir('custom-truncated');
    const made = await backup(contextOf(dir));
    // The table of contents is at the front: what is cut off is table data.
    await truncate(made.file, Math.floor((await stat(made.file)).size * 0.7));
    const sha256 = await sha256Of(made.file);
    const sizeBytes = (await stat(made.file)).size;
    await resign(made.file, (body) => Object.assign(body, { sha256, sizeBytes }));

    await expect(backupVerify(contextOf(dir), 'latest')).resolves.toMatchObject({ ok: true, deep: false });
    for (const jobs of [1, 2]) {
      await expect(backupVerify(contextOf(dir), 'latest', { deep: true, jobs })).rejects.toMatchObject({
        exitCode: 3,
        message: expect.stringContaining('pg_restore could not read every data block'),
      });
    }
  });

  it('passes good backups of every kind, is recorded as deep, and a later plain verification keeps that', async () => {
    const key = { LMS_BACKUP_KEY_FILE: keyFile };
    for (const [name, options] of [
      ['custom', {}],
      ['custom-encrypted', { encrypt: true }],
      ['directory', { jobs: 2 }],
      ['directory-encrypted', { jobs: 2, encrypt: true }],
    ] as const) {
      const dir = await freshDir(`good-${name}`);
      const made = await backup(contextOf(dir, key), options);
      // Read by two pg_restore processes where the archive can be split (not an encrypted file).
      await expect(backupVerify(contextOf(dir, key), 'latest', { deep: true, jobs: 2 }), name).resolves.toMatchObject({
        ok: true,
        deep: true,
      });
      const result = await backupVerify(contextOf(dir, key), 'latest', { deep: true });
      expect(result, name).toMatchObject({ ok: true, deep: true });
      const record = await readVerification(made.file);
      expect(record, name).toMatchObject({ ok: true, deep: true, deepVerifiedAt: record?.checkedAt });
      // No decrypted working copy is left.
      expect(
        (await readdir(dir)).filter((entry) => entry.startsWith('.')),
        name,
      ).toEqual([]);
      await backupVerify(contextOf(dir, key), 'latest');
      const listed = (await backupList(contextOf(dir, key))).backups[0]!;
      expect(listed.deepVerifiedAt, name).toBe(record?.deepVerifiedAt);
      const run = await runLmsctl(['backup', 'list'], { env: envOf(dir, key), cwd: work });
      expect(run.stdout).toMatch(/\sdeep\s/);
    }
  });
});

describe('check weekly counts a deep verification of the newest backup when no drill ran', () => {
  // A local stand-in for the npm registry, so the weekly dependency audit ends at once.
  const registry = http.createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{}');
    });
  });
  let registryUrl: string;
  beforeAll(async () => {
    await new Promise<void>((resolve) => registry.listen(0, '127.0.0.1', resolve));
    registryUrl = `http://127.0.0.1:${(registry.address() as AddressInfo).port}/`;
  });
  afterAll(async () => {
    await new Promise((resolve) => registry.close(resolve));
  });

  async function drillItem(dir: string): Promise<StatusItem> {
    const withoutTrivy = (process.env.PATH ?? '')
      .split(path.delimiter)
      .filter((entry) => entry && !existsSync(path.join(entry, 'trivy')))
      .join(path.delimiter);
    const { ctx } = testContext({
      cwd: work,
      env: { ...envOf(dir), PATH: withoutTrivy, HOME: work, pnpm_config_registry: registryUrl },
    });
    const result = await check(ctx, 'weekly');
    return result.items.find((item) => item.name === 'drill')!;
  }

  it('fails without a drill or a deep verification, passes with a deep verification of the newest backup', async () => {
    const dir = await freshDir('weekly');
    await backup(contextOf(dir));
    expect(await drillItem(dir)).toMatchObject({ state: 'fail', detail: expect.stringContaining('no restore drill') });
    await backupVerify(contextOf(dir), 'latest', { deep: true });
    const counted = await drillItem(dir);
    expect(counted).toMatchObject({ state: 'ok', detail: expect.stringContaining('deep-verified') });
    // A newer backup that was not deep-verified: the older one's deep verification no longer counts.
    await backup(contextOf(dir));
    expect(await drillItem(dir)).toMatchObject({ state: 'fail' });
  });

  it('a drill that ran in the week and failed is not outweighed by a deep verification', async () => {
    const dir = await freshDir('weekly-failed-drill');
    const made = await backup(contextOf(dir));
    await backupVerify(contextOf(dir), 'latest', { deep: true });
    const manifest = await readManifestFile(made.file);
    await mkdir(path.join(dir, 'drills'), { recursive: true });
    await writeFile(
      path.join(dir, 'drills', 'drill_20260101_000000.json'),
      JSON.stringify({
        backup: { file: manifest.file, sha256: manifest.sha256, source: manifest.database },
        routine: true,
        verdict: 'fail',
        finishedAt: new Date().toISOString(),
      }),
    );
    expect(await drillItem(dir)).toMatchObject({ state: 'fail', detail: expect.stringContaining('fail') });
  });
});
