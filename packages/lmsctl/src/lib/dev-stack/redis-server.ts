import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { maskUrl } from '@lms/core';
import { CliError, ExitCode } from '../../errors.js';
import { redisAnswers } from '../../queues/pause.js';
import { freePort } from './port-probes.js';

export interface DevRedis {
  url: string;
  /** Stops the redis-server the dev stack started; null when it uses a Redis that already ran. */
  stop: (() => Promise<void>) | null;
}

/**
 * The Redis of `configuredUrl` when it answers, else a redis-server on a free port of 127.0.0.1
 * saving to `<dataDir>/redis`.
 */
export async function ensureRedis(
  configuredUrl: string,
  dataDir: string,
  say: (line: string) => void,
): Promise<DevRedis> {
  if (await redisAnswers(configuredUrl)) {
    say(`using Redis at ${maskUrl(configuredUrl)}`);
    return { url: configuredUrl, stop: null };
  }
  const which = await execa('redis-server', ['--version'], { reject: false });
  if (which.exitCode !== 0) {
    throw new CliError(
      ExitCode.failed,
      `Redis does not answer at ${maskUrl(configuredUrl)} and redis-server is not installed`,
      'install Redis (Debian/Ubuntu: apt install redis-server; macOS: brew install redis; Windows: Memurai or WSL) or set REDIS_URL',
    );
  }
  const port = await freePort();
  const folder = path.join(dataDir, 'redis');
  await mkdir(folder, { recursive: true });
  const server = execa(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '60 1', '--dir', folder],
    { reject: false, stdio: 'ignore' },
  );
  const stop = async () => {
    server.kill('SIGTERM');
    await server.catch(() => undefined);
  };
  const url = `redis://127.0.0.1:${port}`;
  for (let waited = 0; !(await redisAnswers(url)); waited += 100) {
    if (waited > 10_000) {
      await stop();
      throw new CliError(ExitCode.failed, 'the local redis-server did not start');
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  say(`local redis-server on 127.0.0.1:${port}`);
  return { url, stop };
}
