import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient } from '@lms/core';
import { createTestDatabase, freePort, testRedisPrefix, testRedisUrl, type TestDatabase } from '@lms/core/testing';
import { spawnLmsctl } from '../../testing/run-cli.js';

let database: TestDatabase;
let localDatabase: TestDatabase;
let work: string;
// Every stack of this file keeps its queues under a prefix of its own below this root.
const redisRoot = testRedisPrefix('native');
let stacks = 0;

beforeAll(async () => {
  database = await createTestDatabase('native_up');
  localDatabase = await createTestDatabase('native_local');
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-native-'));
});

afterAll(async () => {
  await database.drop();
  await localDatabase.drop();
  await rm(work, { recursive: true, force: true });
  const redis = new Redis(testRedisUrl);
  try {
    for await (const keys of redis.scanStream({ match: `{${redisRoot}:*`, count: 500 }) as AsyncIterable<string[]>) {
      if (keys.length > 0) await redis.unlink(...keys);
    }
  } finally {
    redis.disconnect();
  }
});

/** `lmsctl up --native` in `cwd`, with free ports for the API, the worker and the mail catcher. */
async function startNative(cwd: string, env: Record<string, string>) {
  const ports = { api: await freePort(), worker: await freePort(), smtp: await freePort() };
  const child = spawnLmsctl(['up', '--native'], {
    cwd,
    env: {
      REDIS_URL: testRedisUrl,
      QUEUE_PREFIX: `{${redisRoot}:${++stacks}}`,
      PORT: String(ports.api),
      WORKER_METRICS_PORT: String(ports.worker),
      SMTP_URL: `smtp://127.0.0.1:${ports.smtp}`,
      LOG_LEVEL: 'warn',
      ...env,
    },
  });
  const output = { stdout: '', stderr: '' };
  child.stdout?.on('data', (chunk: Buffer) => (output.stdout += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (output.stderr += chunk.toString('utf8')));
  return {
    child,
    ports,
    output,
    async running(): Promise<void> {
      for (let waited = 0; !output.stdout.includes('the LMS is running'); waited += 200) {
        if (child.exitCode !== null || waited > 120_000)
          throw new Error(`lmsctl up --native did not start:\n${output.stdout}\n${output.stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    },
    /** Ctrl-C in a terminal: SIGINT to the whole foreground process group. */
    async interrupt() {
      process.kill(-child.pid!, 'SIGINT');
      return child;
    },
    kill(): void {
      if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL');
    },
  };
}

async function publishedCourses(apiPort: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${apiPort}/api/v1/courses`);
  return ((await response.json()) as { items: unknown[] }).items.length;
}

async function refused(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

describe('lmsctl up --native', () => {
  it('migrates, seeds, serves the API and the worker, and stops everything on Ctrl-C', async () => {
    const stack = await startNative(work, {
      DATABASE_URL: database.url,
      CERTIFICATE_STORAGE_DIR: path.join(work, 'certificates'),
    });
    const { ports, output } = stack;
    try {
      await stack.running();
      expect(output.stdout).toContain(`API        http://127.0.0.1:${ports.api}`);
      expect(output.stderr).toContain('using PostgreSQL at');
      expect(output.stderr).toContain('migrations applied');
      expect(output.stderr).toContain(`mail catcher on 127.0.0.1:${ports.smtp}`);

      expect((await fetch(`http://127.0.0.1:${ports.api}/ready`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${ports.worker}/health`)).status).toBe(200);

      // The demo admin printed on first start can sign in.
      const [email, password] = (await readFile(path.join(work, '.lms', 'demo-credentials.txt'), 'utf8'))
        .split('\n')[0]!
        .split(' ');
      expect(output.stdout).toContain(`${email} / ${password}`);
      const login = await fetch(`http://127.0.0.1:${ports.api}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email, password }),
      });
      expect(login.status).toBe(200);
      expect(await publishedCourses(ports.api)).toBe(3);

      const result = await stack.interrupt();
      expect(result.exitCode).toBe(0);
      expect(output.stderr).toContain('stopped');
      // One stop signal each: the worker finished its running jobs instead of abandoning them.
      expect(output.stderr).not.toContain('stopping now');
      expect(await refused(ports.api)).toBe(true);
      expect(await refused(ports.worker)).toBe(true);
    } finally {
      stack.kill();
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

  it('without DATABASE_URL uses the local PostgreSQL that libpq variables describe', async () => {
    const local = new URL(localDatabase.url);
    const cwd = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-local-'));
    const stack = await startNative(cwd, {
      PGHOST: local.hostname,
      PGPORT: local.port || '5432',
      PGUSER: decodeURIComponent(local.username),
      PGDATABASE: localDatabase.name,
    });
    try {
      await stack.running();
      expect(stack.output.stderr).toContain('no DATABASE_URL: using the local PostgreSQL');
      expect(stack.output.stderr).toContain(`using PostgreSQL at postgres://`);
      expect(stack.output.stderr).toContain(`/${localDatabase.name}`);
      expect(await publishedCourses(stack.ports.api)).toBe(3);
      expect((await stack.interrupt()).exitCode).toBe(0);
    } finally {
      stack.kill();
      await rm(cwd, { recursive: true, force: true });
    }
  }, 150_000);

  it('runs an embedded PostgreSQL when no server answers, and stops it with the rest on Ctrl-C', async () => {
    // Only its owner may enter this folder (mkdtemp makes it 0700), like a home directory: as root
    // the server runs as the postgres user, which cannot, so its data lives where it can reach it.
    const fresh = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-embedded-'));
    const asRoot = process.getuid?.() === 0;
    // No DATABASE_URL, and nothing listens where libpq's variables point.
    const stack = await startNative(fresh, { PGPORT: String(await freePort()) });
    const dataFolder = () => {
      const shown = /initialising an embedded PostgreSQL in (.+) \(first run only\)/.exec(stack.output.stderr)?.[1];
      return shown === undefined ? undefined : path.resolve(fresh, shown);
    };
    try {
      await stack.running();
      const folder = dataFolder() ?? '';
      expect(folder, stack.output.stderr).not.toBe('');
      const data = await stat(path.join(folder, 'PG_VERSION'));
      if (asRoot) {
        expect(stack.output.stderr).toContain(`the postgres user cannot enter ${fresh} (mode 700)`);
        expect(folder.startsWith(`${fresh}${path.sep}`)).toBe(false);
        expect(data.uid).not.toBe(0);
      } else {
        expect(folder).toBe(path.join(fresh, '.lms', 'postgres'));
      }
      expect(stack.output.stdout).toMatch(/PostgreSQL postgres:\/\/lms:\*\*\*@127\.0\.0\.1:54329\/lms/);
      expect((await fetch(`http://127.0.0.1:${stack.ports.api}/ready`)).status).toBe(200);
      expect(await publishedCourses(stack.ports.api)).toBe(3);

      const result = await stack.interrupt();
      expect(result.exitCode, stack.output.stderr).toBe(0);
      expect(stack.output.stderr).not.toContain('stopping now');
      expect(await refused(54_329)).toBe(true);
    } finally {
      stack.kill();
      await rm(fresh, { recursive: true, force: true });
      // The data folder of this run when it lay outside (as root: /var/lib/lmsctl/dev-stack-…).
      const folder = dataFolder();
      if (folder && !folder.startsWith(`${fresh}${path.sep}`))
        await rm(path.dirname(folder), { recursive: true, force: true });
    }
  }, 180_000);
});
