import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient } from '@lms/core';
import { createTestEnv, type TestEnv } from '@lms/core/testing';
import { runLmsctl } from '../../testing/run-cli.js';

let env: TestEnv;

beforeAll(async () => {
  env = await createTestEnv('deployrecord');
});

afterAll(async () => {
  await env.cleanup();
});

const record = {
  id: 'deploy-20261205T010203',
  kind: 'deploy',
  project: 'lms',
  env: 'prod',
  image: 'registry.example.com/lms:1.4.0',
  imageId: 'sha256:0123456789abcdef',
  previousImage: 'registry.example.com/lms:1.3.2',
  by: 'ops@deploy-host',
  startedAt: '2026-12-05T01:02:03.000Z',
  finishedAt: '2026-12-05T01:03:04.000Z',
  migrationsApplied: ['0012_deployments'],
  outcome: 'rolled-back',
  reason: 'lms_api_3 was not ready within 2 min',
};

async function rows() {
  const client = await connectClient(env.database.url);
  try {
    return (
      await client.query<{
        id: string;
        image: string;
        outcome: string;
        migrations_applied: string[];
        reason: string | null;
      }>('SELECT id, image, outcome, migrations_applied, reason FROM deployments ORDER BY started_at')
    ).rows;
  } finally {
    await client.end();
  }
}

describe('lmsctl deploy record', () => {
  it('writes the record from stdin into the deployments table, and the same id again updates its outcome', async () => {
    const first = await runLmsctl(['deploy', 'record', '--database-url', env.database.url, '--json'], {
      input: JSON.stringify({ ...record, outcome: 'failed', reason: null }),
    });
    expect(first.exitCode, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toEqual({ recorded: record.id });
    const again = await runLmsctl(['deploy', 'record', '--database-url', env.database.url], {
      input: JSON.stringify(record),
    });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(await rows()).toEqual([
      {
        id: record.id,
        image: record.image,
        outcome: 'rolled-back',
        migrations_applied: ['0012_deployments'],
        reason: record.reason,
      },
    ]);
  });

  it('refuses what is not a deploy record with one line (exit 2), writing nothing', async () => {
    const broken = await runLmsctl(['deploy', 'record', '--database-url', env.database.url], { input: '{"id":' });
    expect(broken.exitCode).toBe(2);
    expect(broken.stderr).toMatch(/^error: deploy record reads one JSON deploy record on stdin/m);
    const wrong = await runLmsctl(['deploy', 'record', '--database-url', env.database.url], {
      input: JSON.stringify({ ...record, id: 'other', outcome: 'maybe' }),
    });
    expect(wrong.exitCode).toBe(2);
    expect(wrong.stderr).toContain('error: not a deploy record: outcome:');
    expect((await rows()).map((row) => row.id)).toEqual([record.id]);
  });
});
