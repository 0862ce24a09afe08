import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type TestEnv } from '@lms/core/testing';
import { createApiTestEnv } from './testing/test-app.js';

const entry = fileURLToPath(new URL('./main.ts', import.meta.url));
const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
let env: TestEnv;

beforeAll(async () => {
  env = await createApiTestEnv('api_main');
});

afterAll(async () => {
  await env.cleanup();
});

/** The real API process with only `vars` (plus PATH and HOME), so a developer's settings never leak in. */
function startApi(vars: Record<string, string>) {
  return execa(process.execPath, ['--conditions=lms-source', '--import', tsx, entry], {
    reject: false,
    extendEnv: false,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...vars },
  });
}

async function waitForHealth(port: number, child: ResultPromise): Promise<void> {
  for (let waited = 0; waited < 20_000; waited += 100) {
    if (child.exitCode !== null) throw new Error(`api exited early: ${String((await child).stderr)}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('api did not start');
}

describe('the api process', () => {
  it('refuses to start with an invalid environment, listing every problem', async () => {
    const run = await startApi({ PORT: 'eighty', DEBUG: 'maybe' });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain('PORT: must be a whole number');
    expect(run.stderr).toContain('DEBUG:');
    const missing = await startApi({});
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toContain('SECRET_KEY: is required by the API');
    expect(missing.stderr).toContain('DATABASE_URL: is required by the API');
  });

  it('serves, then on SIGTERM stops accepting, closes its connections and exits 0', async () => {
    const port = await freePort();
    const child = startApi(env.vars({ PORT: String(port), LOG_LEVEL: 'info' }));
    await waitForHealth(port, child);
    expect(await (await fetch(`http://127.0.0.1:${port}/ready`)).json()).toMatchObject({ status: 'ready' });
    child.kill('SIGTERM');
    const run = await child;
    expect(run.exitCode).toBe(0);
    expect(String(run.stdout)).toContain('"msg":"stopped"');
  });

  it('runs API_WORKERS processes and aggregates their metrics, which promtool accepts', async () => {
    const port = await freePort();
    const child = startApi(env.vars({ PORT: String(port), API_WORKERS: '2', LOG_LEVEL: 'info' }));
    try {
      await waitForHealth(port, child);
      for (let index = 0; index < 9; index++)
        await fetch(`http://127.0.0.1:${port}/api/v1/openapi.json`, { headers: { connection: 'close' } });
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const count = /http_requests_total\{method="GET",route="\/api\/v1\/openapi.json",status_code="200"\} (\d+)/.exec(
        metrics,
      )?.[1];
      // Every request is counted once, whichever worker served it.
      expect(Number(count)).toBe(9);
      const check = await execa('promtool', ['check', 'metrics'], { input: metrics, reject: false, all: true });
      expect(check.all, 'promtool check metrics of the aggregate').toBe('');
      expect(check.exitCode).toBe(0);
    } finally {
      child.kill('SIGTERM');
      const run = await child;
      expect(run.exitCode).toBe(0);
    }
  });
});
