import http from 'node:http';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import {
  accessTokenKeyId,
  connectClient,
  defaultMigrationsDir,
  Migrator,
  redisConnectionOptions,
  secretKeyFromHex,
  webhookSecretBox,
  webhookSecretContext,
  withDatabase,
} from '@lms/core';
import { createTestDatabase, testRedisPrefix, testRedisUrl, type TestDatabase } from '@lms/core/testing';
import { testContext } from '../testing/context.js';
import { runLmsctl } from '../testing/run-cli.js';
import { backup } from '../backup/create.js';
import { keyIdOf } from '../backup/archive/crypto.js';
import { probePostgres, type StatusItem } from '../health/probes.js';
import { startOwnPostgres } from '../../../api/src/testing/own-postgres.js';
import { RUNBOOK_BASE } from '../health/runbooks.js';
import { dailyTrafficQueries, type CheckResult } from './check.js';
import type { StatusResult } from './status.js';

let database: TestDatabase;
let work: string;
let env: Record<string, string>;
const servers: http.Server[] = [];

/** A local HTTP server at the network boundary; `handle` answers every request. */
async function fakeServer(
  handle: (req: http.IncomingMessage, body: string) => { status: number; json: unknown },
): Promise<string> {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const { status, json } = handle(req, body);
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(json));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

beforeAll(async () => {
  database = await createTestDatabase('status');
  await new Migrator({ connectionString: database.url, dir: defaultMigrationsDir }).up();
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-status-'));
  env = {
    DATABASE_URL: database.url,
    REDIS_URL: testRedisUrl,
    QUEUE_PREFIX: testRedisPrefix('status'),
    LMS_BACKUP_DIR: path.join(work, 'db'),
    LMS_DRILL_DIR: path.join(work, 'drills'),
  };
});

afterAll(async () => {
  for (const server of servers) server.close();
  await database.drop();
  await rm(work, { recursive: true, force: true });
});

const readyApi = () =>
  fakeServer(() => ({ status: 200, json: { status: 'ready', checks: { database: 'ok', redis: 'ok' } } }));

describe('lmsctl status', () => {
  it('reports every item; without a backup it is not healthy (exit 1)', async () => {
    const api = await readyApi();
    const run = await runLmsctl(['status', '--json', '--api-url', api], { env, cwd: work });
    expect(run.exitCode).toBe(1);
    const result = JSON.parse(run.stdout) as StatusResult;
    const byName = Object.fromEntries(result.items.map((item) => [item.name, item]));
    expect(Object.keys(byName)).toEqual([
      'api',
      'postgresql',
      'migrations',
      'redis',
      'queue emails',
      'queue progress',
      'queue certificates',
      'queue webhooks',
      'backup',
      'drill',
      'access-token keys',
      'webhook keys',
      'backup key',
    ]);
    expect(byName.api).toMatchObject({ state: 'ok', data: { status: 200 } });
    expect(byName.postgresql).toMatchObject({ state: 'ok', data: { maxConnections: expect.any(Number) } });
    expect(byName.migrations!.state).toBe('ok');
    // The test Redis keeps nothing on disk: that is worth a warning, not a failure.
    expect(byName.redis).toMatchObject({ state: 'warn', detail: expect.stringContaining('persistence is off') });
    expect(byName.backup).toMatchObject({
      state: 'fail',
      detail: expect.stringContaining(`no backup of ${database.name} in`),
    });
    // No key is set for lmsctl here: nothing to compare, nothing wrong.
    expect(byName['access-token keys']).toMatchObject({ state: 'manual' });
    expect(byName['webhook keys']).toMatchObject({ state: 'ok', detail: 'no webhook secrets stored' });
    expect(byName['backup key']).toMatchObject({
      state: 'ok',
      detail: 'LMS_BACKUP_KEY_FILE is not set; no encrypted backups',
    });
    expect(result.healthy).toBe(false);
  });

  it('is healthy with a fresh verified backup (exit 0), and fails when the API is down', async () => {
    await backup(testContext({ cwd: work, env }).ctx);
    const api = await readyApi();
    const healthy = await runLmsctl(['status', '--api-url', api], { env, cwd: work });
    expect(healthy.exitCode, healthy.stdout).toBe(0);
    expect(healthy.stdout).toMatch(/^healthy/m);
    const down = await runLmsctl(['status', '--api-url', 'http://127.0.0.1:1'], { env, cwd: work });
    expect(down.exitCode).toBe(1);
    expect(down.stdout).toMatch(/FAIL\s+api\s+http:\/\/127\.0\.0\.1:1\/ready does not answer/);
  });

  it('warns while the API answers /ready as degraded (its Redis is down, it still serves)', async () => {
    const api = await fakeServer(() => ({
      status: 200,
      json: { status: 'degraded', checks: { database: 'ok', redis: 'unavailable' } },
    }));
    const run = await runLmsctl(['status', '--json', '--api-url', api], { env, cwd: work });
    const result = JSON.parse(run.stdout) as StatusResult;
    expect(result.items.find((item) => item.name === 'api')).toMatchObject({
      state: 'warn',
      detail: expect.stringContaining('answered 200 (database ok, redis unavailable)'),
    });
  });
  it("shows a queue's delayed jobs apart from its waiting ones (an idle queue holds the scheduler's next run)", async () => {
    const queue = new Queue('emails', { connection: redisConnectionOptions(testRedisUrl), prefix: env.QUEUE_PREFIX });
    try {
      await queue.add('email.send', { to: 'a@example.com', template: 'welcome', props: {} }, { delay: 3_600_000 });
      const run = await runLmsctl(['status', '--json', '--api-url', await readyApi()], { env, cwd: work });
      const item = (JSON.parse(run.stdout) as StatusResult).items.find((entry) => entry.name === 'queue emails');
      expect(item).toMatchObject({
        detail: expect.stringContaining('0 waiting, 1 delayed'),
        data: { ready: 0, delayed: 1 },
      });
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });
});

describe('lmsctl status: which keys are live', () => {
  const jwtKey = 'j'.repeat(64);
  const jwtNext = 'n'.repeat(64);
  const webhookOld = '1a'.repeat(32);
  const webhookNew = '2b'.repeat(32);
  const webhookStranger = '3c'.repeat(32);

  async function items(vars: Record<string, string>): Promise<Record<string, StatusItem>> {
    const run = await runLmsctl(['status', '--json', '--api-url', await readyApi()], {
      env: { ...env, ...vars },
      cwd: work,
    });
    const output = run.stdout + run.stderr;
    for (const secret of [jwtKey, jwtNext, webhookOld, webhookNew, webhookStranger])
      expect(output).not.toContain(secret);
    return Object.fromEntries((JSON.parse(run.stdout) as StatusResult).items.map((item) => [item.name, item]));
  }

  it('names SECRET_KEY and SECRET_KEY_PREVIOUS by kid, webhook secrets per key id, backups per backup key id', async () => {
    const keysDir = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-status-keys-'));
    const client = await connectClient(database.url);
    try {
      // Webhook secrets in the middle of a rotation: one under the old key, two under the new.
      for (const [key, count] of [[webhookOld, 1] as const, [webhookNew, 2] as const]) {
        const box = webhookSecretBox({ WEBHOOK_SECRET_KEY: key })!;
        for (let index = 0; index < count; index++) {
          const { rows } = await client.query<{ id: string }>(
            `INSERT INTO webhook_subscriptions (url, events, secret) VALUES ('https://hooks.example.com/x', '{course.completed}', 'placeholder') RETURNING id`,
          );
          const id = rows[0]!.id;
          const sealed = box.seal(`secret-${index}`, webhookSecretContext(id));
          await client.query(
            'UPDATE webhook_subscriptions SET secret = NULL, secret_ciphertext = $2, secret_key_id = $3 WHERE id = $1',
            [id, sealed.ciphertext, sealed.keyId],
          );
        }
      }
      // One encrypted backup under the old backup key, in a folder of this test's own.
      const backupDir = path.join(keysDir, 'db');
      const oldKeyFile = path.join(keysDir, 'old.key');
      const newKeyFile = path.join(keysDir, 'new.key');
      await writeFile(oldKeyFile, `${'ab'.repeat(32)}\n`, { mode: 0o600 });
      await writeFile(newKeyFile, `${'cd'.repeat(32)}\n`, { mode: 0o600 });
      const backupEnv = { LMS_BACKUP_DIR: backupDir, LMS_BACKUP_KEY_FILE: oldKeyFile };
      await backup(testContext({ cwd: work, env: { ...env, ...backupEnv } }).ctx, { encrypt: true });
      const oldBackupId = keyIdOf(Buffer.from('ab'.repeat(32), 'hex'));
      const newBackupId = keyIdOf(Buffer.from('cd'.repeat(32), 'hex'));

      const switched = await items({
        ...backupEnv,
        LMS_BACKUP_KEY_FILE: newKeyFile,
        SECRET_KEY: jwtNext,
        SECRET_KEY_PREVIOUS: jwtKey,
        WEBHOOK_SECRET_KEY: webhookNew,
        WEBHOOK_SECRET_KEY_PREVIOUS: webhookOld,
      });
      expect(switched['access-token keys']).toMatchObject({
        state: 'ok',
        data: { signingKid: accessTokenKeyId(jwtNext), alsoAcceptedKid: accessTokenKeyId(jwtKey) },
      });
      const newId = secretKeyFromHex(webhookNew).id;
      const oldId = secretKeyFromHex(webhookOld).id;
      expect(switched['webhook keys']).toMatchObject({
        state: 'warn',
        detail: expect.stringContaining('run `lmsctl webhooks encrypt-secrets`'),
        data: { keyId: newId, previousKeyId: oldId, plainText: 0, secretsByKeyId: { [newId]: 2, [oldId]: 1 } },
      });
      expect(switched['backup key']).toMatchObject({
        state: 'warn',
        data: { keyId: newBackupId, backupsByKeyId: { [oldBackupId]: 1 }, newestKeyId: oldBackupId },
      });
      expect(switched['backup key']!.detail).toContain(
        `keep the key file of ${oldBackupId} until those backups are pruned`,
      );

      // Retired too early: the old webhook key is gone while a secret still needs it.
      const retired = await items({ ...backupEnv, SECRET_KEY: jwtNext, WEBHOOK_SECRET_KEY: webhookNew });
      expect(retired['access-token keys']).toMatchObject({
        detail: `signed with kid ${accessTokenKeyId(jwtNext)} (SECRET_KEY); no other key accepted`,
      });
      expect(retired['webhook keys']).toMatchObject({
        state: 'fail',
        detail: expect.stringContaining(`1 under ${oldId} (NOT configured)`),
      });
      expect(retired['backup key']).toMatchObject({ state: 'ok', data: { keyId: oldBackupId } });
    } finally {
      await client.query('DELETE FROM webhook_subscriptions');
      await client.end();
      await rm(keysDir, { recursive: true, force: true });
    }
  });
});

describe('lmsctl status: connections in use', () => {
  it("counts client connections only, not the server's own processes (checkpointer, WAL writer, autovacuum…)", async () => {
    // A server of this test's own: on the shared one, other test files connect all the time.
    const own = await startOwnPostgres();
    const held: Awaited<ReturnType<typeof connectClient>>[] = [];
    try {
      for (let index = 0; index < 3; index++) held.push(await connectClient(own.url));
      const { rows } = await held[0]!.query<{ server: number }>(
        `SELECT count(*)::int AS server FROM pg_stat_activity WHERE backend_type <> 'client backend'`,
      );
      expect(rows[0]!.server).toBeGreaterThanOrEqual(3);
      const [item] = await probePostgres(testContext({ cwd: work, env: { DATABASE_URL: own.url } }).ctx);
      // The three held here and the probe's own.
      expect(item).toMatchObject({ name: 'postgresql', data: { connections: 4 } });
      expect(item!.detail).toMatch(/, 4 of \d+ connections in use/);
    } finally {
      await Promise.all(held.map((client) => client.end()));
      await own.destroy();
    }
  });
});

describe('lmsctl check', () => {
  /** A fake Prometheus answering each query of `check daily` with the given value (null: an empty vector). */
  async function prometheusAnswering(answers: { requests: string | null; errors: string | null; p99: string | null }) {
    const queries: string[] = [];
    const url = await fakeServer((req) => {
      const query = new URL(req.url ?? '', 'http://x').searchParams.get('query') ?? '';
      queries.push(query);
      const which = (Object.keys(dailyTrafficQueries) as Array<keyof typeof dailyTrafficQueries>).find(
        (key) => dailyTrafficQueries[key] === query,
      );
      const value = which ? answers[which] : null;
      return {
        status: 200,
        json: {
          status: 'success',
          data: { resultType: 'vector', result: value === null ? [] : [{ metric: {}, value: [1700000000, value] }] },
        },
      };
    });
    return { url, queries };
  }

  async function daily(
    prometheus: string,
  ): Promise<{ exitCode: number | undefined; items: Record<string, StatusItem> }> {
    const run = await runLmsctl(
      ['check', 'daily', '--json', '--api-url', await readyApi(), '--prometheus-url', prometheus],
      { env, cwd: work },
    );
    const result = JSON.parse(run.stdout) as CheckResult;
    return { exitCode: run.exitCode, items: Object.fromEntries(result.items.map((item) => [item.name, item])) };
  }

  it('daily: reads the error rate and p99 of the API job from Prometheus', async () => {
    const prometheus = await prometheusAnswering({ requests: '5000', errors: '10', p99: '0.35' });
    const { exitCode, items } = await daily(prometheus.url);
    expect(items['error rate']).toMatchObject({
      state: 'ok',
      detail: '0.20 % of 5000 requests answered 5xx in the last 24 h (alert at 5 %)',
    });
    expect(items['latency p99']).toMatchObject({
      state: 'ok',
      detail: 'p99 350 ms over the last 24 h (alert at 5 s)',
    });
    expect(items['backup disk']!.state).toBe('ok');
    expect(prometheus.queries).toEqual([
      'sum(increase(http_requests_total{job="api"}[24h]))',
      'sum(increase(http_requests_total{job="api",status_code=~"5.."}[24h])) or vector(0)',
      'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job="api"}[24h])))',
    ]);
    expect(exitCode).toBe(0);
  });

  it('daily: requests without a single 5xx are 0 %, not "no requests"; no requests at all says so', async () => {
    // A Prometheus without the `or vector(0)` fallback answers the errors with an empty vector.
    const noErrors = await daily((await prometheusAnswering({ requests: '1200', errors: null, p99: '0.08' })).url);
    expect(noErrors.items['error rate']).toMatchObject({
      state: 'ok',
      detail: '0.00 % of 1200 requests answered 5xx in the last 24 h (alert at 5 %)',
      data: { errorRate: 0, requests: 1200 },
    });
    const quiet = await daily((await prometheusAnswering({ requests: '0', errors: '0', p99: null })).url);
    expect(quiet.items['error rate']).toMatchObject({ state: 'warn', data: { errorRate: null } });
    expect(quiet.items['error rate']!.detail).toMatch(
      /^no requests recorded in http:\/\/127\.0\.0\.1:\d+ for the last 24 h \(job "api"\)$/,
    );
    const nothing = await daily((await prometheusAnswering({ requests: null, errors: '0', p99: null })).url);
    expect(nothing.items['error rate']).toMatchObject({ state: 'warn', data: { errorRate: null, requests: null } });
  });

  it('daily: a high error rate fails; without Prometheus the numbers become manual items', async () => {
    const failing = await daily((await prometheusAnswering({ requests: '1000', errors: '90', p99: '0.2' })).url);
    expect(failing.items['error rate']).toMatchObject({ state: 'fail' });
    expect(failing.exitCode).toBe(1);
    const manual = JSON.parse(
      (await runLmsctl(['check', 'daily', '--json', '--api-url', await readyApi()], { env, cwd: work })).stdout,
    ) as CheckResult;
    expect(manual.items.find((item) => item.name === 'error rate')?.state).toBe('manual');
  });

  it('weekly: needs a passed drill and sends a test alert through Alertmanager', async () => {
    const alerts: unknown[] = [];
    const alertmanager = await fakeServer((req, body) => {
      if (req.method === 'POST') {
        alerts.push(...(JSON.parse(body) as unknown[]));
        return { status: 200, json: {} };
      }
      return { status: 200, json: alerts };
    });
    const noDrill = await runLmsctl(['check', 'weekly', '--json', '--alertmanager-url', alertmanager], {
      env,
      cwd: work,
    });
    expect(noDrill.exitCode).toBe(1);
    expect(alerts).toEqual([
      expect.objectContaining({
        labels: expect.objectContaining({ alertname: 'LmsctlDeliveryTest' }),
        // Every receiver's template links the runbook: without one Slack showed `<|Runbook>`.
        annotations: expect.objectContaining({
          description: expect.stringContaining('lmsctl check weekly'),
          runbook_url: `${RUNBOOK_BASE}lmsctl-delivery-test.md`,
        }),
      }),
    ]);
    const result = JSON.parse(noDrill.stdout) as CheckResult;
    expect(result.items.find((item) => item.name === 'alert delivery')?.state).toBe('ok');
    expect(result.items.find((item) => item.name === 'drill')?.state).toBe('fail');
    expect(result.items.find((item) => item.name === 'slow queries')?.state).toBe('manual');

    await mkdir(env.LMS_DRILL_DIR!, { recursive: true });
    await writeFile(
      path.join(env.LMS_DRILL_DIR!, 'drill_20260101_000000.json'),
      JSON.stringify({
        // As reports before source identities were recorded: the source database by name only.
        backup: { file: 'x.dump', sha256: 'a'.repeat(64), database: database.name },
        verdict: 'pass',
        finishedAt: new Date().toISOString(),
      }),
    );
    expect(
      (await runLmsctl(['check', 'weekly', '--alertmanager-url', alertmanager], { env, cwd: work })).exitCode,
    ).toBe(0);
  });

  it('predeploy: fails on an edited migration or a backup older than allowed', async () => {
    const api = await readyApi();
    const fine = await runLmsctl(['check', 'predeploy', '--api-url', api], { env, cwd: work });
    expect(fine.exitCode, fine.stdout).toBe(0);
    const stale = await runLmsctl(['check', 'predeploy', '--api-url', api, '--max-backup-age', '1ms'], {
      env,
      cwd: work,
    });
    expect(stale.exitCode).toBe(1);
    // Only a backup of this very database counts, as for `migrate --require-backup`.
    const elsewhere = await runLmsctl(['check', 'predeploy', '--json', '--api-url', api], {
      env: { ...env, DATABASE_URL: withDatabase(database.url, 'postgres') },
      cwd: work,
    });
    expect(
      (JSON.parse(elsewhere.stdout) as CheckResult).items.find((entry) => entry.name === 'verified backup'),
    ).toMatchObject({ state: 'fail', detail: expect.stringContaining('no verified backup of postgres') });
    const client = await connectClient(database.url);
    await client.query(`UPDATE schema_migrations SET checksum = 'tampered' WHERE version = 1`);
    await client.end();
    const edited = await runLmsctl(['check', 'predeploy', '--json', '--api-url', api], { env, cwd: work });
    expect(edited.exitCode).toBe(1);
    const item = (JSON.parse(edited.stdout) as CheckResult).items.find((entry) => entry.name === 'migrations validate');
    expect(item).toMatchObject({
      state: 'fail',
      detail: expect.stringContaining('0001_users_and_sessions.sql was edited'),
    });
    expect(await readFile(path.join(env.LMS_BACKUP_DIR!, '.gitkeep'), 'utf8').catch(() => 'none')).toBe('none');
  });
});
