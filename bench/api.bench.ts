import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { execa, type ResultPromise } from 'execa';
import { connectClient } from '@lms/core';
import { freePort } from '@lms/core/testing';
import { BENCH_SCALE, ensureBenchDatabase } from './bench-database.js';
import { median, type Benchmark, type Comparison } from './lib.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../', import.meta.url));
const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const ROUNDS = 3;
const SECONDS = 20;
const CONNECTIONS = 50;
const WARM_UP_SECONDS = 5;
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

/**
 * One API process with every middleware on (request logging at info, security headers, metrics,
 * Redis rate limits, the cache), 50 connections, side by side with a bare Express 5 + pg route
 * that reads one course by its primary key.
 */
export const apiBench: Benchmark = {
  id: 'api',
  async run() {
    await run('pnpm', ['build'], { cwd: root });
    const url = await ensureBenchDatabase('lms_bench', BENCH_SCALE, log);
    const client = await connectClient(url);
    const courseId = (await client.query<{ id: string }>(`SELECT id FROM courses WHERE status = 'published' LIMIT 1`))
      .rows[0]!.id;
    await client.end();

    const barePort = await freePort();
    const apiPort = await freePort();
    const env = { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: url };
    const bare = execa(process.execPath, ['--import', tsx, path.join(root, 'bench/api/bare-server.ts')], {
      env: { ...env, PORT: String(barePort) },
      extendEnv: false,
      reject: false,
    });
    const api = execa(process.execPath, [path.join(root, 'packages/api/dist/main.js')], {
      env: {
        ...env,
        PORT: String(apiPort),
        NODE_ENV: 'production',
        // Queues of its own, never those of a development stack on the same Redis.
        QUEUE_PREFIX: `{lms-bench}:api:${process.pid}`,
        SECRET_KEY: 'bench-secret-'.repeat(6),
        LOG_LEVEL: 'info',
        RATE_LIMIT_PER_MINUTE: '1000000',
        RATE_LIMIT_USER_PER_MINUTE: '1000000',
      },
      extendEnv: false,
      stdout: 'ignore',
      reject: false,
    });
    try {
      await waitFor(`http://127.0.0.1:${barePort}/courses/${courseId}`, bare);
      await waitFor(`http://127.0.0.1:${apiPort}/ready`, api);
      const targets = {
        bare: `http://127.0.0.1:${barePort}/courses/${courseId}`,
        detail: `http://127.0.0.1:${apiPort}/api/v1/courses/${courseId}`,
        list: `http://127.0.0.1:${apiPort}/api/v1/courses`,
      };
      // Warm the caches and the JIT of all three servers under the same load before measuring.
      for (const target of Object.values(targets)) await wrk(target, WARM_UP_SECONDS);
      const results: Record<keyof typeof targets, WrkResult[]> = { bare: [], detail: [], list: [] };
      const order = Object.keys(targets) as Array<keyof typeof targets>;
      for (let round = 0; round < ROUNDS; round++) {
        for (const name of order.map((_, index) => order[(index + round) % order.length]!)) {
          log(`round ${round + 1}/${ROUNDS}: ${name}`);
          results[name].push(await wrk(targets[name]));
        }
      }
      const status = await readFile(`/proc/${api.pid}/status`, 'utf8');
      const rssMiB = Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
      const rps = (name: keyof typeof targets) => median(results[name].map((result) => result.requestsPerSecond));
      const p99 = Math.max(...results.detail.concat(results.list).map((result) => result.p99Ms));
      const errors = [...results.detail, ...results.list].reduce((sum, result) => sum + result.errors, 0);
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
          what: 'worst p99 latency of the API runs',
          value: p99,
          anchorName: '50 ms ceiling',
          anchor: 50,
          unit: 'ms',
          limit: 1,
          direction: 'at-most',
        },
        {
          what: 'errors (non-2xx and socket) of the API runs',
          value: errors,
          anchorName: 'one error',
          anchor: 1,
          unit: '',
          limit: 0,
          direction: 'at-most',
        },
        {
          what: `API RSS after ${ROUNDS * 2 * SECONDS} s of load`,
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
          `wrk, ${CONNECTIONS} connections, ${SECONDS} s per run after a ${WARM_UP_SECONDS} s warm-up run of each target, median of ${ROUNDS} rounds with the order rotating; one API process ` +
          '(`NODE_ENV=production`, request logging at info, rate limits in Redis, metrics, security headers), built (`dist/`), ' +
          'against a bare Express 5 + pg server reading the same course. wrk, the servers, PostgreSQL and Redis share the 2 cores.',
        comparisons,
        notes: [
          'Samples (req/s), in round order:',
          '',
          ...order.map(
            (name) => `- ${name}: ${results[name].map((result) => Math.round(result.requestsPerSecond)).join(', ')}`,
          ),
        ],
      };
    } finally {
      bare.kill('SIGTERM');
      api.kill('SIGTERM');
      await Promise.all([bare, api]);
    }
  },
};
