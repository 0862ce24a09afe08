import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient } from '@lms/core';
import { createTestDatabase, testRedisPrefix, testRedisUrl, type TestDatabase } from '@lms/core/testing';
import { spawnLmsctl } from '../testing/run-cli.js';

let database: TestDatabase;
let work: string;

beforeAll(async () => {
  database = await createTestDatabase('native_up');
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-native-'));
});

afterAll(async () => {
  await database.drop();
  await rm(work, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('lmsctl up --native', () => {
  it('migrates, seeds, serves the API and the worker, and stops everything on Ctrl-C', async () => {
    const [apiPort, workerPort, smtpPort] = [await freePort(), await freePort(), await freePort()];
    const child = spawnLmsctl(['up', '--native'], {
      cwd: work,
      env: {
        DATABASE_URL: database.url,
        REDIS_URL: testRedisUrl,
        QUEUE_PREFIX: `{${testRedisPrefix('native')}}`,
        PORT: String(apiPort),
        WORKER_METRICS_PORT: String(workerPort),
        SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
        CERTIFICATE_STORAGE_DIR: path.join(work, 'certificates'),
        LOG_LEVEL: 'warn',
      },
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    try {
      for (let waited = 0; !stdout.includes('the LMS is running'); waited += 200) {
        if (child.exitCode !== null || waited > 90_000)
          throw new Error(`lmsctl up --native did not start:\n${stdout}\n${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(stdout).toContain(`API        http://127.0.0.1:${apiPort}`);
      expect(stderr).toContain('using PostgreSQL at');
      expect(stderr).toContain('migrations applied');
      expect(stderr).toContain(`mail catcher on 127.0.0.1:${smtpPort}`);

      expect((await fetch(`http://127.0.0.1:${apiPort}/ready`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${workerPort}/health`)).status).toBe(200);

      // The demo admin printed on first start can sign in.
      const [email, password] = (await readFile(path.join(work, '.lms', 'demo-credentials.txt'), 'utf8'))
        .split('\n')[0]!
        .split(' ');
      expect(stdout).toContain(`${email} / ${password}`);
      const login = await fetch(`http://127.0.0.1:${apiPort}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email, password }),
      });
      expect(login.status).toBe(200);
      const courses = (await (await fetch(`http://127.0.0.1:${apiPort}/api/v1/courses`)).json()) as {
        items: unknown[];
      };
      expect(courses.items).toHaveLength(3);

      // Ctrl-C in a terminal signals the whole foreground process group.
      process.kill(-child.pid!, 'SIGINT');
      const result = await child;
      expect(result.exitCode).toBe(0);
      expect(stderr).toContain('stopped');
      // One stop signal each: the worker finished its running jobs instead of abandoning them.
      expect(stderr).not.toContain('stopping now');
      await expect(fetch(`http://127.0.0.1:${apiPort}/ready`)).rejects.toThrow();
      await expect(fetch(`http://127.0.0.1:${workerPort}/health`)).rejects.toThrow();
    } finally {
      if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL');
    }

    // Stopping the processes keeps the data.
    const client = await connectClient(database.url);
    try {
      const users = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM users');
      expect(users.rows[0]!.n).toBe(15);
    } finally {
      await client.end();
    }
  }, 150_000);

  it('runs an embedded PostgreSQL when no DATABASE_URL is set, and stops it with the rest on Ctrl-C', async () => {
    const fresh = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-embedded-'));
    // As root the embedded server runs as the postgres user, which must pass through this folder.
    await chmod(fresh, 0o711);
    const [apiPort, workerPort, smtpPort] = [await freePort(), await freePort(), await freePort()];
    const child = spawnLmsctl(['up', '--native'], {
      cwd: fresh,
      env: {
        REDIS_URL: testRedisUrl,
        QUEUE_PREFIX: `{${testRedisPrefix('embedded')}}`,
        PORT: String(apiPort),
        WORKER_METRICS_PORT: String(workerPort),
        SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
        LOG_LEVEL: 'warn',
      },
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    try {
      for (let waited = 0; !stdout.includes('the LMS is running'); waited += 200) {
        if (child.exitCode !== null || waited > 120_000)
          throw new Error(`lmsctl up --native did not start:\n${stdout}\n${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(stderr).toContain('initialising an embedded PostgreSQL in .lms/postgres');
      expect(stdout).toMatch(/PostgreSQL postgres:\/\/lms:\*\*\*@127\.0\.0\.1:54329\/lms/);
      expect((await fetch(`http://127.0.0.1:${apiPort}/ready`)).status).toBe(200);
      const courses = (await (await fetch(`http://127.0.0.1:${apiPort}/api/v1/courses`)).json()) as {
        items: unknown[];
      };
      expect(courses.items).toHaveLength(3);

      process.kill(-child.pid!, 'SIGINT');
      const result = await child;
      expect(result.exitCode, stderr).toBe(0);
      expect(stderr).not.toContain('stopping now');
      const refused = await new Promise<boolean>((resolve) => {
        const socket = net.connect(54_329, '127.0.0.1');
        socket.once('connect', () => {
          socket.destroy();
          resolve(false);
        });
        socket.once('error', () => resolve(true));
      });
      expect(refused).toBe(true);
    } finally {
      if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL');
      await rm(fresh, { recursive: true, force: true });
    }
  }, 180_000);
});
