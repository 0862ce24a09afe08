import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../packages/core/src/testing/index.js';
import { createTestApi, type TestApi } from '../../packages/api/src/testing/test-app.js';

/**
 * The real API behind the host's real `caddy run` with ops/caddy/Caddyfile, driven only through
 * its environment placeholders: plain HTTP on a spare port, the API on another, no admin endpoint,
 * a short health interval. What it guards: nothing a client sends takes the site down, Redis
 * being down does not take the site down, and the API's security headers reach the client.
 */

const caddyfile = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'Caddyfile');
const MB = 1_000_000;

interface Backend {
  api: TestApi;
  server: http.Server;
  base: string;
  /** Status codes of the `/ready` answers the API has finished, in order. */
  readyAnswers: number[];
}

async function startBackend(vars: Record<string, string> = {}): Promise<Backend> {
  const api = await createTestApi(vars);
  const readyAnswers: number[] = [];
  const server = http.createServer(api.app);
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (req.url === '/ready') res.on('finish', () => readyAnswers.push(res.statusCode));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { api, server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, readyAnswers };
}

async function stopBackend(backend: Backend | undefined): Promise<void> {
  if (!backend) return;
  backend.server.closeAllConnections();
  await new Promise((resolve) => backend.server.close(resolve));
  await backend.api.close();
}

interface Proxy {
  base: string;
  stop(): Promise<void>;
}

/** `caddy run` with the real Caddyfile in front of `backend`, its storage in a folder of its own. */
async function startCaddy(backend: Backend): Promise<Proxy> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lms-caddy-test-'));
  const port = await freePort();
  const child: ResultPromise = execa('caddy', ['run', '--config', caddyfile, '--adapter', 'caddyfile'], {
    extendEnv: false,
    env: {
      PATH: process.env.PATH,
      HOME: dir,
      XDG_DATA_HOME: path.join(dir, 'data'),
      XDG_CONFIG_HOME: path.join(dir, 'config'),
      APP_DOMAIN: `http://127.0.0.1:${port}`,
      API_UPSTREAMS: new URL(backend.base).host,
      API_HEALTH_INTERVAL: '250ms',
      CADDY_ADMIN: 'off',
    },
    reject: false,
    all: true,
    buffer: { all: true },
  });
  const stop = async () => {
    child.kill('SIGTERM');
    await child;
    await rm(dir, { recursive: true, force: true });
  };
  const base = `http://127.0.0.1:${port}`;
  try {
    let exited = false;
    void child.finally(() => (exited = true));
    for (const deadline = Date.now() + 20_000; ;) {
      if (exited) throw new Error(`caddy exited before it answered:\n${String((await child).all)}`);
      const answered = await fetch(`${base}/health`).then(
        (response) => response.status === 200,
        () => false,
      );
      if (answered) return { base, stop };
      if (Date.now() > deadline) throw new Error('caddy did not answer /health within 20 s');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } catch (error) {
    await stop();
    throw error;
  }
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * POSTs `bytes` of JSON, with Content-Length or chunked. A server may answer before it has read
 * the body and then close the connection: the answer counts, the client's write error after it
 * does not.
 */
function postJson(url: string, bytes: number, framing: 'content-length' | 'chunked'): Promise<Answer> {
  const body = Buffer.alloc(bytes, 'a');
  body.write('{"a":"');
  body.write('"}', bytes - 2);
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(framing === 'chunked' ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(bytes) }),
      },
    });
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
      res.on('error', reject);
    });
    req.on('error', (error) => {
      if (!answered) reject(error);
    });
    for (let offset = 0; offset < bytes; offset += MB) req.write(body.subarray(offset, offset + MB));
    req.end();
  });
}

describe('Caddy in front of the API (real caddy run, real Caddyfile)', () => {
  let backend: Backend | undefined;
  let proxy: Proxy | undefined;

  beforeAll(async () => {
    backend = await startBackend();
    proxy = await startCaddy(backend);
  });

  afterAll(async () => {
    await proxy?.stop();
    await stopBackend(backend);
  });

  it('answers an 11 MB body 413 itself, three times, and the site keeps answering', async () => {
    for (let attempt = 0; attempt < 3; attempt++) {
      const answer = await postJson(`${proxy!.base}/api/v1/auth/login`, 11 * MB, 'content-length');
      expect(answer.status).toBe(413);
      expect(answer.headers['content-type']).toMatch(/^application\/json/);
      expect(JSON.parse(answer.body)).toEqual({
        error: { code: 'payload_too_large', message: 'request body is larger than 10 MB' },
      });
    }
    expect((await fetch(`${proxy!.base}/api/v1/courses`)).status).toBe(200);
  });

  it('passes a body under the limit to the API, which applies its own', async () => {
    const answer = await postJson(`${proxy!.base}/api/v1/auth/login`, 200_000, 'content-length');
    expect(answer.status).toBe(413);
    expect(JSON.parse(answer.body).error.message).toBe('request body is larger than 100 kB');
  });

  it('lets the API refuse an 11 MB chunked body, three times, without marking it down', async () => {
    for (let attempt = 0; attempt < 3; attempt++) {
      const answer = await postJson(`${proxy!.base}/api/v1/auth/login`, 11 * MB, 'chunked');
      expect(answer.status).toBe(413);
      expect(JSON.parse(answer.body).error.code).toBe('payload_too_large');
    }
    expect((await fetch(`${proxy!.base}/api/v1/courses`)).status).toBe(200);
  });

  it("passes the API's security headers unchanged, adds HSTS, sends no Server header", async () => {
    const response = await fetch(`${proxy!.base}/api/v1/courses`);
    expect(response.status).toBe(200);
    expect(Object.fromEntries(response.headers)).toMatchObject({
      'x-xss-protection': '0',
      'referrer-policy': 'no-referrer',
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'content-security-policy': "default-src 'none';frame-ancestors 'none'",
      'strict-transport-security': 'max-age=31536000; includeSubDomains',
    });
    expect(response.headers.get('server')).toBeNull();
    const own = await postJson(`${proxy!.base}/api/v1/auth/login`, 11 * MB, 'content-length');
    expect(own.headers.server).toBeUndefined();
    expect(own.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
  });

  it('answers the metrics path 404, which the API itself serves', async () => {
    expect((await fetch(`${backend!.base}/metrics`)).status).toBe(200);
    expect((await fetch(`${proxy!.base}/metrics`)).status).toBe(404);
    expect((await fetch(`${proxy!.base}/metrics/anything`)).status).toBe(404);
  });
});

describe('Caddy in front of an API whose Redis is down (real caddy run, real Caddyfile)', () => {
  let backend: Backend | undefined;
  let proxy: Proxy | undefined;

  beforeAll(async () => {
    backend = await startBackend({ REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
    proxy = await startCaddy(backend);
  });

  afterAll(async () => {
    await proxy?.stop();
    await stopBackend(backend);
  });

  it('keeps sending reads to it once the active health check has seen /ready', async () => {
    // Three answers finished: Caddy has acted on at least the first, whatever the interval.
    for (const deadline = Date.now() + 20_000; backend!.readyAnswers.length < 3;) {
      if (Date.now() > deadline) throw new Error(`Caddy asked /ready ${backend!.readyAnswers.length} times in 20 s`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(backend!.readyAnswers.slice(0, 3)).toEqual([200, 200, 200]);
    const ready = await fetch(`${proxy!.base}/ready`);
    // Without Redis the rate limits are counted per process, and /ready says so too.
    expect(await ready.json()).toEqual({
      status: 'degraded',
      checks: { database: 'ok', redis: 'unavailable', rateLimits: 'per-process' },
    });
    const read = await fetch(`${proxy!.base}/api/v1/courses`);
    expect(read.status).toBe(200);
    expect(await read.json()).toMatchObject({ items: [] });
  });
});
