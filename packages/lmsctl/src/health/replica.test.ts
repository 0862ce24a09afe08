import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient } from '@lms/core';
import { freePort, startStreamingReplica, type StreamingReplica } from '@lms/core/testing';
import { testContext } from '../testing/context.js';
import { runLmsctl } from '../testing/run-cli.js';
import type { StatusResult } from '../commands/status.js';
import { probeReplica } from './replica.js';

/** `lmsctl status`'s replica line, against a real hot standby of a primary of this test's own. */

let pair: StreamingReplica | undefined;
let work: string;

beforeAll(async () => {
  pair = await startStreamingReplica();
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-replica-'));
}, 60_000);

afterAll(async () => {
  try {
    await pair?.destroy();
  } finally {
    if (work) await rm(work, { recursive: true, force: true });
  }
});

async function replicaLine(vars: Record<string, string> = {}) {
  const { ctx } = testContext({
    cwd: work,
    env: { DATABASE_URL: pair!.primaryUrl, DATABASE_READ_URL: pair!.replicaUrl, ...vars },
  });
  return probeReplica(ctx);
}

async function commit(): Promise<void> {
  const client = await connectClient(pair!.primaryUrl);
  try {
    await client.query('CREATE TABLE IF NOT EXISTS beat (at timestamptz)');
    await client.query('INSERT INTO beat VALUES (now())');
  } finally {
    await client.end();
  }
}

const server = () => `127.0.0.1:${new URL(pair!.replicaUrl).port}`;

describe('the replica line of lmsctl status', () => {
  it('is absent without DATABASE_READ_URL, and shows the lag of a standby in step', async () => {
    const { ctx } = testContext({ cwd: work, env: { DATABASE_URL: pair!.primaryUrl } });
    expect(await probeReplica(ctx)).toEqual([]);
    await commit();
    await pair!.caughtUp();
    expect(await replicaLine()).toEqual([
      expect.objectContaining({
        name: 'replica',
        state: 'ok',
        detail: `${server()}: standby, 0.0 s behind the primary`,
        data: expect.objectContaining({ standby: true, lagSeconds: 0, replayPaused: false }),
      }),
    ]);
  });

  it('warns with the lag while replay is paused and the primary writes on, over REPLICA_MAX_LAG_SECONDS', async () => {
    await commit();
    await pair!.caughtUp();
    await pair!.pauseReplay();
    try {
      await commit();
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const [item] = await replicaLine({ REPLICA_MAX_LAG_SECONDS: '1' });
      expect(item).toMatchObject({ name: 'replica', state: 'warn', data: { replayPaused: true } });
      expect(item!.detail).toMatch(
        new RegExp(
          `^${server()}: \\d+\\.\\d s behind the primary, replay paused, over REPLICA_MAX_LAG_SECONDS \\(1 s\\): the API reads from the primary`,
        ),
      );
      expect((item!.data as { lagSeconds: number }).lagSeconds).toBeGreaterThan(1);
    } finally {
      await pair!.resumeReplay();
    }
  });

  it('warns when the replica does not answer, or is no standby; the whole status says so with --json', async () => {
    await pair!.stopReplica();
    try {
      const [down] = await replicaLine();
      expect(down).toMatchObject({ name: 'replica', state: 'warn', data: { answers: false } });
      expect(down!.detail).toMatch(/connection refused .*the API reads from the primary meanwhile/);

      const run = await runLmsctl(['status', '--json', '--api-url', 'http://127.0.0.1:1'], {
        env: {
          DATABASE_URL: pair!.primaryUrl,
          DATABASE_READ_URL: pair!.replicaUrl,
          // No Redis there: this test looks at the replica line and leaves no queue keys behind.
          REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
          LMS_BACKUP_DIR: path.join(work, 'db'),
          LMS_DRILL_DIR: path.join(work, 'drills'),
        },
        cwd: work,
      });
      const items = (JSON.parse(run.stdout) as StatusResult).items;
      const names = items.map((item) => item.name);
      // After the primary's lines, before Redis.
      expect(names.indexOf('replica')).toBeGreaterThan(names.indexOf('migrations'));
      expect(names.indexOf('replica')).toBeLessThan(names.indexOf('redis'));
      expect(items.find((item) => item.name === 'replica')).toMatchObject({ state: 'warn', data: { answers: false } });
    } finally {
      await pair!.startReplica();
    }
    const [primaryAsReplica] = await replicaLine({ DATABASE_READ_URL: pair!.primaryUrl });
    expect(primaryAsReplica).toMatchObject({ state: 'warn', data: { standby: false } });
    expect(primaryAsReplica!.detail).toContain('is not a standby');
  });
});
