import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient } from '@lms/core';
import { createTestDatabase, freePort, testRedisPrefix, testRedisUrl, type TestDatabase } from '@lms/core/testing';
import { runLmsctl, spawnLmsctl } from '../../testing/run-cli.js';

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
    // The queues under `{root:N}`, the API's cache and limits under `root:N:` (the same without braces).
    for (const match of [`{${redisRoot}:*`, `${redisRoot}:*`]) {
      for await (const keys of redis.scanStream({ match, count: 500 }) as AsyncIterable<string[]>) {
        if (keys.length > 0) await redis.unlink(...keys);
      }
    }
  } finally {
    redis.disconnect();
  }
});

/** `lmsctl up --native` in `cwd`, with free ports for the API, the worker and the mail catcher. */
async function startNative(cwd: string, env: Record<string, string>, args: string[] = []) {
  const ports = { api: await freePort(), worker: await freePort(), smtp: await freePort() };
  const child = spawnLmsctl(['up', '--native', ...args], {
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
    /** The exit code once lmsctl ends by itself; null when it still runs after `ms` (a minute). */
    async exited(ms = 60_000): Promise<number | null> {
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)));
      const result = await Promise.race([child.then(({ exitCode }) => exitCode ?? 1), gaveUp]);
      clearTimeout(timer);
      return result;
    },
    /**
     * After a failed assertion: Ctrl-C first, so lmsctl stops the API and the worker it started
     * (they run in process groups of their own, which a SIGKILL of lmsctl would leave running,
     * still polling Redis); SIGKILL only when lmsctl has not ended 30 s later.
     */
    async kill(): Promise<void> {
      if (child.exitCode !== null || child.signalCode !== null) return;
      // A group that ended a moment ago (its exit not yet seen here) is no error of the test's.
      const signal = (name: NodeJS.Signals) => {
        try {
          process.kill(-child.pid!, name);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
        }
      };
      signal('SIGINT');
      if ((await this.exited(30_000)) === null) signal('SIGKILL');
    },
  };
}

/**
 * The local addresses listening on TCP `port`, from the kernel's socket tables (Linux), so the
 * check needs no connection to an address other than loopback.
 */
async function listeningAddresses(port: number): Promise<string[]> {
  const addresses: string[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const lines = existsSync(table) ? (await readFile(table, 'utf8')).split('\n').slice(1) : [];
    for (const line of lines) {
      const [, local, , state] = line.trim().split(/\s+/);
      if (!local || state !== '0A') continue;
      const [address, portHex] = local.split(':') as [string, string];
      if (Number.parseInt(portHex, 16) !== port) continue;
      addresses.push(
        address.length === 8
          ? // IPv4 in the table's byte order (little-endian here).
            (address.match(/../g) ?? [])
              .map((byte) => Number.parseInt(byte, 16))
              .reverse()
              .join('.')
          : /^0+$/.test(address)
            ? '::'
            : `ipv6 ${address}`,
      );
    }
  }
  return addresses;
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
      // Loopback only: the demo accounts' passwords are printed above.
      expect(await listeningAddresses(ports.api)).toEqual(['127.0.0.1']);
      expect(await listeningAddresses(ports.worker)).toEqual(['127.0.0.1']);

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
      await stack.kill();
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

  it('refuses --env other than dev before anything starts (exit 2)', async () => {
    const cwd = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-native-env-'));
    const stack = await startNative(cwd, { DATABASE_URL: database.url }, ['--env', 'prod']);
    try {
      expect(await stack.exited(), stack.output.stderr).toBe(2);
      expect(stack.output.stderr.trim()).toBe(
        'error: --native runs only the dev stack: drop --env prod, or drop --native to start prod with Docker Compose',
      );
      expect(stack.output.stdout).not.toContain('the LMS is running');
      expect(existsSync(path.join(cwd, '.lms'))).toBe(false);
    } finally {
      await stack.kill();
      await rm(cwd, { recursive: true, force: true });
    }
  }, 90_000);

  it('refuses a --host that is not an address of this machine (exit 2)', async () => {
    const cwd = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-native-host-'));
    try {
      const result = await runLmsctl(['up', '--native', '--host', '203.0.113.9'], {
        cwd,
        env: { DATABASE_URL: database.url, REDIS_URL: testRedisUrl, PORT: String(await freePort()) },
      });
      expect(result.exitCode, result.stderr).toBe(2);
      expect(result.stderr).toContain('--host 203.0.113.9 is not an address of this machine');
      expect(existsSync(path.join(cwd, '.lms'))).toBe(false);
    } finally {
      await rm(cwd, { recursive: true, force: true });
    }
  }, 60_000);

  it('refuses a taken PORT before anything starts, even when what holds it answers health checks', async () => {
    const cwd = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-native-port-'));
    // Another process on the API's port that answers 200 to everything, /ready included.
    const squatter = http.createServer((_req, res) => res.end('{}'));
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    const taken = (squatter.address() as net.AddressInfo).port;
    const stack = await startNative(cwd, { DATABASE_URL: database.url, PORT: String(taken) });
    try {
      expect(await stack.exited(), stack.output.stderr).toBe(1);
      expect(stack.output.stderr).toContain(`port ${taken} (PORT) is already in use`);
      expect(stack.output.stderr).toContain('set PORT to a free port');
      expect(stack.output.stderr).not.toMatch(/^\s+at /m);
      expect(stack.output.stderr).not.toContain('using PostgreSQL');
      expect(stack.output.stdout).not.toContain('the LMS is running');
      expect(existsSync(path.join(cwd, '.lms'))).toBe(false);
    } finally {
      await stack.kill();
      squatter.close();
      await rm(cwd, { recursive: true, force: true });
    }
  }, 90_000);

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
      await stack.kill();
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
      await stack.kill();
      await rm(fresh, { recursive: true, force: true });
      // The data folder of this run when it lay outside (as root: /var/lib/lmsctl/dev-stack-…).
      const folder = dataFolder();
      if (folder && !folder.startsWith(`${fresh}${path.sep}`))
        await rm(path.dirname(folder), { recursive: true, force: true });
    }
  }, 180_000);
});
