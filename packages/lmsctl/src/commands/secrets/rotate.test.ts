import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accessTokenKeyId, secretKeyFromHex } from '@lms/core';
import { readBackupKey } from '../../backup/archive/crypto.js';
import { testContext } from '../../testing/context.js';
import { runLmsctl } from '../../testing/run-cli.js';
import { rotateSecret, type RotationPlan } from './rotate.js';

const CURRENT_JWT = 'c'.repeat(64);
let work: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-rotate-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const HEX_KEY = /\b[0-9a-f]{64}\b/g;

describe('lmsctl secrets rotate', () => {
  it('jwt: prints a new key once, then stage, switch and retire naming keys by id only', async () => {
    const run = await runLmsctl(['secrets', 'rotate', '--what', 'jwt'], {
      env: { SECRET_KEY: CURRENT_JWT },
      cwd: work,
    });
    expect(run.exitCode, run.stderr).toBe(0);
    const keys = run.stdout.match(HEX_KEY) ?? [];
    expect(keys).toHaveLength(1);
    const key = keys[0]!;
    const kid = accessTokenKeyId(key);
    const currentKid = accessTokenKeyId(CURRENT_JWT);
    expect(run.stdout).toContain(`new key (key id ${kid}), shown this once:\n${key}\n`);
    expect(run.stderr).not.toContain(key);
    expect(run.stdout).not.toContain(CURRENT_JWT);
    const steps = run.stdout.split('\n').filter((line) => /^[a-z]+: /.test(line));
    expect(steps.map((line) => line.split(':')[0])).toEqual(['generate', 'stage', 'switch', 'retire']);
    // Stage: every replica learns the new key while still signing with the current one; then switch.
    expect(run.stdout).toContain(
      `  set    SECRET_KEY = the key being replaced (key id ${currentKid}) (unchanged)\n  set    SECRET_KEY_PREVIOUS = the new key (key id ${kid})\n`,
    );
    expect(run.stdout).toContain(
      `  set    SECRET_KEY = the new key (key id ${kid})\n  set    SECRET_KEY_PREVIOUS = the key being replaced (key id ${currentKid})\n`,
    );
    expect(run.stdout).toContain('  unset  SECRET_KEY_PREVIOUS\n');
    expect(run.stdout).toContain('ACCESS_TOKEN_TTL (15m) has passed');
  });

  it('--json needs --out; --out writes a 0600 file that is never overwritten, and the JSON names it by id', async () => {
    const refused = await runLmsctl(['secrets', 'rotate', '--what', 'webhook', '--json'], { cwd: work });
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain('--json never carries a key: add --out <file>');

    const file = path.join(work, 'webhook.key');
    const written = await runLmsctl(['secrets', 'rotate', '--what', 'webhook', '--json', '--out', file], {
      cwd: work,
    });
    expect(written.exitCode, written.stderr).toBe(0);
    const key = (await readFile(file, 'utf8')).trim();
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    if (process.platform !== 'win32') expect((await stat(file)).mode & 0o777).toBe(0o600);
    const plan = JSON.parse(written.stdout) as RotationPlan;
    expect(plan.newKey).toEqual({ keyId: secretKeyFromHex(key).id, file });
    expect(plan.steps.map((step) => step.step)).toEqual(['generate', 'stage', 'switch', 'retire']);
    expect(written.stdout + written.stderr).not.toContain(key);
    expect(plan.steps.find((step) => step.step === 'switch')!.check).toContain(
      'lmsctl webhooks encrypt-secrets  (re-encrypts in batches; safe to run again)',
    );

    const again = await runLmsctl(['secrets', 'rotate', '--what', 'webhook', '--json', '--out', file], { cwd: work });
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toContain(`--out ${file} already exists; nothing was written`);
    expect((await readFile(file, 'utf8')).trim()).toBe(key);
  });

  it('backup: the key file is one lmsctl reads, never inside the backup folder; the old key id is named', async () => {
    const backupDir = path.join(work, 'db');
    await mkdir(backupDir, { recursive: true });
    const oldFile = path.join(work, 'old-backup.key');
    await writeFile(oldFile, `${'ab'.repeat(32)}\n`, { mode: 0o600 });
    const env = { LMS_BACKUP_DIR: backupDir, LMS_BACKUP_KEY_FILE: oldFile };
    const oldId = (await readBackupKey(oldFile, {})).keyId;

    const inside = testContext({ env, cwd: work });
    await expect(rotateSecret(inside.ctx, { what: 'backup', out: path.join(backupDir, 'new.key') })).rejects.toThrow(
      'is inside the backup folder',
    );

    const { ctx } = testContext({ env, cwd: work });
    const newFile = path.join(work, 'new-backup.key');
    const plan = await rotateSecret(ctx, { what: 'backup', out: newFile });
    const newKey = await readBackupKey(newFile, { backupDir });
    expect(plan.currentKeyId).toBe(oldId);
    expect(plan.newKey).toEqual({ keyId: newKey.keyId, file: newFile });
    const switching = plan.steps.find((step) => step.step === 'switch')!;
    expect(switching.set).toEqual({
      LMS_BACKUP_KEY_FILE: `the path of the new key (key id ${newKey.keyId}, in ${newFile})`,
    });
    expect(switching.notes.join('\n')).toContain(`stay encrypted with the key being replaced (key id ${oldId})`);
  });

  it('--step prints one step and makes no key; --out goes only with generate', async () => {
    const { ctx } = testContext({ env: { SECRET_KEY: CURRENT_JWT }, cwd: work });
    const stage = await rotateSecret(ctx, { what: 'jwt', step: 'stage' });
    expect(stage.newKey).toBeNull();
    expect(stage.steps.map((step) => step.step)).toEqual(['stage']);
    expect(stage.steps[0]!.set).toEqual({
      SECRET_KEY: `the key being replaced (key id ${accessTokenKeyId(CURRENT_JWT)}) (unchanged)`,
      SECRET_KEY_PREVIOUS: 'the new key',
    });
    await expect(rotateSecret(ctx, { what: 'jwt', step: 'retire', out: path.join(work, 'x.key') })).rejects.toThrow(
      '--out writes the new key: it goes with the generate step, not --step retire',
    );
  });
});
