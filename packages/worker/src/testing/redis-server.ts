import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from '@lms/core/testing';

/**
 * A redis-server of the test's own on 127.0.0.1 (no persistence, like a Redis that loses its
 * data when it dies), for outages: `kill` SIGKILLs it, `start` brings it back on the same port.
 */
export interface OwnRedis {
  url: string;
  port: number;
  start(): Promise<void>;
  kill(): Promise<void>;
}

export async function ownRedis(): Promise<OwnRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const kill = async () => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGKILL');
    await exited;
  };
  const start = async () => {
    await kill();
    const started = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = started;
    await new Promise<void>((resolve, reject) => {
      let output = '';
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Ready to accept connections')) {
          started.stdout?.off('data', onData);
          started.stdout?.resume();
          resolve();
        }
      };
      started.stdout?.on('data', onData);
      started.stderr?.resume();
      started.once('error', reject);
      started.once('exit', (code) => reject(new Error(`redis-server exited (${code}) before it was ready: ${output}`)));
    });
  };
  await start();
  return { url: `redis://127.0.0.1:${port}`, port, start, kill };
}
