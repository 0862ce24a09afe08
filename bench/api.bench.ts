import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { execa, type ResultPromise } from 'execa';
import { connectClient } from '@lms/core';
import { freePort, startPgBouncer, testServerUrl } from '@lms/core/testing';
import { BENCH_SCALE, benchServerUrl, ensureBenchDatabase } from './bench-database.js';
import { median, type Benchmark, type Comparison } from './lib.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../', import.meta.url));
const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const ROUNDS = 5;
// Six targets per round: short runs keep the whole benchmark within a few minutes.
const SECONDS = 10;
const CONNECTIONS = 50;
const WARM_UP_SECONDS = 3;
// The bare server's pg pool (bench/api/bare-server.ts): PgBouncer gets as many server
// connections, so the comparison is the extra hop, not a smaller pool.
const BARE_POOL_SIZE = 20;
/** A certificate the bench database is given, for the public check's read. */
const BENCH_CERTIFICATE = 'BENCH-CERT-0001';
const log = (line: string) => process.stderr.write(`${line}\n`);

interface WrkResult {
  requestsPerSecond: number;
  p99Ms: number;
  errors: number;
}

function toMs(value: string, unit: string): number {
  return Number(value) * ({ us: 0.001, ms: 1, s: 1000 } as Record<string, number>)[unit]!;
}

/** One wrk run: throughput, 99th percentile latency, and every non-2xx or socket error. */
async function wrk(url: string, seconds = SECONDS): Promise<WrkResult> {
  const { stdout } = await run('wrk', ['-t2', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', url]);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s)$/m.exec(stdout);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(stdout);
  return {
    requestsPerSecond: Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)![1]),
    p99Ms: p99 ? toMs(p99[1]!, p99[2]!) : Number.NaN,
    errors:
      (socket ? socket.slice(1).reduce((sum, count) => sum + Number(count), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0),
  };
}

async function waitFor(url: string, child: ResultPromise): Promise<void> {
  for (let waited = 0; waited < 30_000; waited += 100) {
    if (child.exitCode !== null) throw new Error(`server exited: ${String((await child).stderr)}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // Not up yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url} did not answer`);
}

// The API processes that connect to PostgreSQL itself share its max_connections with the bare
// servers and other users of the server: bounded pools keep them under it (the warm cache needs
// few connections anyway).
const BOUNDED_POOL = { DB_POOL_SIZE: '10', DB_MAX_OVERFLOW: '0' };

/** The API built in dist/, as production runs it, on its own port and queue prefix. */
function startApi(
  port: number,
  databaseUrl: string,
  workers: number,
  name: string,
  extraEnv: Record<string, string> = {},
  pool: Record<string, string> = BOUNDED_POOL,
): ResultPromise {
  return execa(process.execPath, [path.join(root, 'packages/api/dist/main.js')], {
    env: {
      ...extraEnv,
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      API_WORKERS: String(workers),
      NODE_ENV: 'production',
      // Queues of its own, never those of a development stack on the same Redis.
      QUEUE_PREFIX: `{lms-bench}:${name}:${process.pid}`,
      SECRET_KEY: 'bench-secret-'.repeat(6),
      // Production requires it; the bench writes no webhook secret, so any 64 hex digits do.
      WEBHOOK_SECRET_KEY: 'ab'.repeat(32),
      LOG_LEVEL: 'info',
      RATE_LIMIT_PER_MINUTE: '1000000',
      RATE_LIMIT_USER_PER_MINUTE: '1000000',
      ...pool,
    },
    extendEnv: false,
    stdout: 'ignore',
    reject: false,
  });
}

function startBare(port: number, databaseUrl: string): ResultPromise {
  return execa(process.execPath, ['--import', tsx, path.join(root, 'bench/api/bare-server.ts')], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: databaseUrl, PORT: String(port) },
    extendEnv: false,
    reject: false,
  });
}

/**
 * One API process with every middleware on (request logging at info, security headers, metrics,
 * Redis rate limits, the cache), 50 connections, side by side with a bare Express 5 + pg route
 * that reads one course by its primary key; the same API with `API_WORKERS=2` against the one
 * process; and the bare route through Debian's PgBouncer (transaction mode) against direct.
 */
export const apiBench: Benchmark = {
  id: 'api',
  async run() {
    // The PgBouncer helper fronts the test server; both must be the server the bench database is on.
    if (new URL(benchServerUrl).host !== new URL(testServerUrl).host) {
      throw new Error(
        `BENCH_DATABASE_URL (${new URL(benchServerUrl).host}) and TEST_DATABASE_URL (${new URL(testServerUrl).host}) must name the same server: the api bench's PgBouncer fronts TEST_DATABASE_URL`,
      );
    }
    await run('pnpm', ['build'], { cwd: root });
    const url = await ensureBenchDatabase('lms_bench', BENCH_SCALE, log);
    const client = await connectClient(url);
    const courseId = (await client.query<{ id: string }>(`SELECT id FROM courses WHERE status = 'published' LIMIT 1`))
      .rows[0]!.id;
    // The public certificate check reads the primary on every request (never cached, never a
    // replica): the API's uncached read, direct and through PgBouncer.
    await client.query(
      `INSERT INTO certificates (enrollment_id, user_id, course_id, code, learner_name, course_title)
       SELECT e.id, e.user_id, e.course_id, $1, u.name, c.title
         FROM enrollments e JOIN users u ON u.id = e.user_id JOIN courses c ON c.id = e.course_id
        LIMIT 1
       ON CONFLICT DO NOTHING`,
      [BENCH_CERTIFICATE],
    );
    await client.end();

    const bouncer = await startPgBouncer({ poolMode: 'transaction', poolSize: BARE_POOL_SIZE });
    const [barePort, bouncedPort, apiPort, clusterPort, bouncedApiPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const bare = startBare(barePort, url);
    const bounced = startBare(bouncedPort, bouncer.urlOf('lms_bench'));
    const api = startApi(apiPort, url, 1, 'api');
    const cluster = startApi(clusterPort, url, 2, 'api-cluster');
    // As the prod compose file's pgbouncer profile runs it: the app through the pooler, what needs
    // a session (the worker's migration check, lmsctl) direct.
    // Its pool keeps the documented default (DB_POOL_SIZE + DB_MAX_OVERFLOW): through a pooler
    // those are client connections to PgBouncer, which cost PostgreSQL nothing — PgBouncer's own
    // pool (BARE_POOL_SIZE server connections) is what reaches the server.
    const bouncedApi = startApi(
      bouncedApiPort,
      bouncer.urlOf('lms_bench'),
      1,
      'api-pgbouncer',
      { DATABASE_DIRECT_URL: url },
      {},
    );
    try {
      await waitFor(`http://127.0.0.1:${barePort}/courses/${courseId}`, bare);
      await waitFor(`http://127.0.0.1:${bouncedPort}/courses/${courseId}`, bounced);
      await waitFor(`http://127.0.0.1:${apiPort}/ready`, api);
      await waitFor(`http://127.0.0.1:${clusterPort}/ready`, cluster);
      await waitFor(`http://127.0.0.1:${bouncedApiPort}/ready`, bouncedApi);
      const targets = {
        bare: `http://127.0.0.1:${barePort}/courses/${courseId}`,
        bareViaPgBouncer: `http://127.0.0.1:${bouncedPort}/courses/${courseId}`,
        detail: `http://127.0.0.1:${apiPort}/api/v1/courses/${courseId}`,
        list: `http://127.0.0.1:${apiPort}/api/v1/courses`,
        detail2Workers: `http://127.0.0.1:${clusterPort}/api/v1/courses/${courseId}`,
        list2Workers: `http://127.0.0.1:${clusterPort}/api/v1/courses`,
        verify: `http://127.0.0.1:${apiPort}/api/v1/certificates/verify/${BENCH_CERTIFICATE}`,
        verifyViaPgBouncer: `http://127.0.0.1:${bouncedApiPort}/api/v1/certificates/verify/${BENCH_CERTIFICATE}`,
      };
      type Target = keyof typeof targets;
      // Warm the caches and the JIT of every server under the same load before measuring.
      for (const target of Object.values(targets)) await wrk(target, WARM_UP_SECONDS);
      const order = Object.keys(targets) as Target[];
      const results = Object.fromEntries(order.map((name) => [name, [] as WrkResult[]])) as Record<Target, WrkResult[]>;
      for (let round = 0; round < ROUNDS; round++) {
        for (const name of order.map((_, index) => order[(index + round) % order.length]!)) {
          log(`round ${round + 1}/${ROUNDS}: ${name}`);
          results[name].push(await wrk(targets[name]));
        }
      }
      const status = await readFile(`/proc/${api.pid}/status`, 'utf8');
      const rssMiB = Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
      const rps = (name: Target) => median(results[name].map((result) => result.requestsPerSecond));
      const worstP99 = (...names: Target[]) => Math.max(...names.flatMap((name) => results[name].map((r) => r.p99Ms)));
      const errors = order.flatMap((name) => results[name]).reduce((sum, result) => sum + result.errors, 0);
      const comparisons: Comparison[] = [
        {
          what: '`GET /api/v1/courses/:id` (published, cache warm)',
          value: rps('detail'),
          anchorName: 'bare Express 5 + pg, same course by primary key',
          anchor: rps('bare'),
          unit: 'req/s',
          limit: 1.0,
          direction: 'at-least',
        },
        {
          what: '`GET /api/v1/courses` (page of 20)',
          value: rps('list'),
          anchorName: 'bare Express 5 + pg, same course by primary key',
          anchor: rps('bare'),
          unit: 'req/s',
          limit: 0.6,
          direction: 'at-least',
        },
        {
          what: '`GET /api/v1/courses/:id` (cache warm), `API_WORKERS=2`',
          value: rps('detail2Workers'),
          anchorName: 'the same, one API process',
          anchor: rps('detail'),
          unit: 'req/s',
          limit: 1.3,
          direction: 'at-least',
        },
        {
          what: '`GET /api/v1/courses` (page of 20), `API_WORKERS=2`',
          value: rps('list2Workers'),
          anchorName: 'the same, one API process',
          anchor: rps('list'),
          unit: 'req/s',
          limit: 1.3,
          direction: 'at-least',
        },
        {
          what: '`GET /api/v1/certificates/verify/:code` (one query on the primary per request) through PgBouncer, transaction mode',
          value: rps('verifyViaPgBouncer'),
          anchorName: 'the same, direct to PostgreSQL',
          anchor: rps('verify'),
          unit: 'req/s',
          limit: 0.9,
          direction: 'at-least',
        },
        {
          what: 'course by primary key (bare Express 5 + pg) through PgBouncer, transaction mode',
          value: rps('bareViaPgBouncer'),
          anchorName: 'the same, direct to PostgreSQL',
          anchor: rps('bare'),
          unit: 'req/s',
          limit: 0.9,
          direction: 'at-least',
        },
        {
          what: 'worst p99 latency of the one-process API runs',
          value: worstP99('detail', 'list'),
          anchorName: '50 ms ceiling',
          anchor: 50,
          unit: 'ms',
          limit: 1,
          direction: 'at-most',
        },
        {
          what: 'errors (non-2xx and socket) of every run',
          value: errors,
          anchorName: 'one error',
          anchor: 1,
          unit: '',
          limit: 0,
          direction: 'at-most',
        },
        {
          what: `one-process API RSS after ${ROUNDS * 2 * SECONDS} s of its load`,
          value: rssMiB,
          anchorName: '200 MiB ceiling',
          anchor: 200,
          unit: 'MiB',
          limit: 1,
          direction: 'at-most',
        },
      ];
      return {
        id: 'api',
        title: 'API throughput',
        method:
          `wrk, ${CONNECTIONS} connections, ${SECONDS} s per run after a ${WARM_UP_SECONDS} s warm-up run of each target, median of ${ROUNDS} rounds with the order rotating; ` +
          'the API (`NODE_ENV=production`, request logging at info, rate limits in Redis, metrics, security headers), built (`dist/`), ' +
          'as one process and as `API_WORKERS=2` (node:cluster, two servers behind one port), ' +
          `against a bare Express 5 + pg server (pool of ${BARE_POOL_SIZE}) reading the same course, direct and through Debian's PgBouncer ` +
          `(transaction mode, ${BARE_POOL_SIZE} server connections): every request of the bare route is one query, so the pooler's extra hop weighs its most there. ` +
          "The API processes connected to PostgreSQL itself keep pools of 10 (they share the server's `max_connections` with the bare servers). The API through PgBouncer is a fifth process, configured as the prod compose file's `pgbouncer` profile runs it (`DATABASE_URL` the pooler, `DATABASE_DIRECT_URL` the server, the default pool of 20 + 40 overflow, which are client connections to PgBouncer), measured against the API direct on the public certificate check, which queries the primary on every request. " +
          'wrk, the servers, PgBouncer, PostgreSQL and Redis share the 2 cores.',
        comparisons,
        notes: [
          'Samples (req/s, p99 ms, errors if any), in round order:',
          '',
          ...order.map(
            (name) =>
              `- ${name}: ${results[name]
                .map(
                  (result) =>
                    `${Math.round(result.requestsPerSecond)} (${result.p99Ms.toFixed(1)}${result.errors ? `, ${result.errors} errors` : ''})`,
                )
                .join(', ')}`,
          ),
        ],
      };
    } finally {
      for (const child of [bare, bounced, api, cluster, bouncedApi]) child.kill('SIGTERM');
      await Promise.all([bare, bounced, api, cluster, bouncedApi]);
      await bouncer.stop();
    }
  },
};
