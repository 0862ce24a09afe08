import net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger } from '@lms/core';
import { freePort, type TestEnv } from '@lms/core/testing';
import { closeDeps, createDeps, type Deps } from './deps.js';
import { createApiTestEnv } from './testing/test-app.js';

/**
 * A reconnect that reaches a peer which accepts and never answers (a Redis going away while the
 * reconnect landed, a half-open socket) must not keep the API's Redis connection in its handshake
 * for good: with the reply timeout it is dropped and tried again, and the API reaches Redis once a
 * Redis answers. A proxy plays both: silent for its first connection, then forwarding to Redis.
 */
let env: TestEnv;
let proxy: net.Server;
let port: number;
let deps: Deps | undefined;
const sockets = new Set<net.Socket>();

beforeAll(async () => {
  env = await createApiTestEnv('redisreconnect');
  port = await freePort();
  const redis = new URL(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379');
  let accepted = 0;
  proxy = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    accepted += 1;
    if (accepted === 1) return; // silent: accepts, reads, never answers
    const upstream = net.connect(Number(redis.port || 6379), redis.hostname);
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => proxy.listen(port, '127.0.0.1', resolve));
});

afterAll(async () => {
  if (deps) await closeDeps(deps);
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => proxy.close(resolve));
  await env.cleanup();
});

it('drops a connection stuck in its handshake and reaches Redis on the next attempt', async () => {
  const parsed = env.config({ REDIS_URL: `redis://127.0.0.1:${port}/0` });
  deps = createDeps(
    { ...parsed, SECRET_KEY: parsed.SECRET_KEY! },
    { redisPrefix: `${env.redisPrefix}:`, logger: createLogger({ level: 'silent' }), redisSocketTimeoutMs: 1000 },
  );
  const deadline = Date.now() + 20_000;
  while (deps.redis.status !== 'ready') {
    if (Date.now() > deadline) throw new Error(`the API's Redis connection is still ${deps.redis.status} after 20 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  expect(await deps.redis.ping()).toBe('PONG');
});
