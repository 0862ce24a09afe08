import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import type { RedisNodeAddress } from '@lms/core';

const run = promisify(execFile);

/** A Redis Cluster of the test's own: masters only, on 127.0.0.1, no persistence. */
export interface OwnRedisCluster {
  /** The masters, in the order started. */
  nodes: RedisNodeAddress[];
  /** The nodes as REDIS_CLUSTER_NODES writes them. */
  seeds: string;
  /** The master serving the slot of `key`. */
  nodeOf(key: string): Promise<RedisNodeAddress>;
  /** Kills every node and removes their folder. */
  stop(): Promise<void>;
}

/** Whether nothing listens on `port` of 127.0.0.1 (checked by listening on it). */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * `count` ports whose cluster bus ports (port + 10000) are free too. freePort's ephemeral ports
 * are too high for that (the bus port would pass 65535), so they are drawn from 20000-29999.
 */
async function clusterPorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let tries = 0; ports.length < count; tries++) {
    if (tries > 200) throw new Error('found no free ports for a Redis Cluster in 20000-29999');
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    if (ports.includes(port)) continue;
    if ((await portFree(port)) && (await portFree(port + 10_000))) ports.push(port);
  }
  return ports;
}

function startNode(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    [
      '--cluster-enabled',
      'yes',
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--cluster-config-file',
      path.join(dir, `nodes-${port}.conf`),
      '--cluster-node-timeout',
      '2000',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    let output = '';
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) {
        child.stdout?.off('data', onData);
        child.stdout?.resume();
        resolve(child);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.resume();
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`redis-server on ${port} exited (${code}): ${output}`)));
  });
}

async function clusterState(port: number): Promise<string | undefined> {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const info = await client.cluster('INFO');
    return /^cluster_state:(\w+)/m.exec(info)?.[1];
  } finally {
    client.disconnect();
  }
}

/**
 * Starts `masters` redis-servers in cluster mode on spare ports, joins them with
 * `redis-cli --cluster create` (no replicas) and waits until every node says cluster_state:ok.
 * On any failure everything started is killed and removed before the error is thrown.
 */
export async function startRedisCluster(masters = 3): Promise<OwnRedisCluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lms-redis-cluster-'));
  const children: ChildProcess[] = [];
  // A test run that ends without its clean-up (a crash, a timeout) must not leave servers behind.
  const killAll = () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killAll);
  const stop = async () => {
    process.off('exit', killAll);
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await exited;
      }),
    );
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const ports = await clusterPorts(masters);
    children.push(...(await Promise.all(ports.map((port) => startNode(port, dir)))));
    await run('redis-cli', [
      '--cluster',
      'create',
      ...ports.map((port) => `127.0.0.1:${port}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    for (const deadline = Date.now() + 20_000; ;) {
      const states = await Promise.all(ports.map((port) => clusterState(port).catch(() => undefined)));
      if (states.every((state) => state === 'ok')) break;
      if (Date.now() > deadline)
        throw new Error(`the Redis Cluster did not reach cluster_state:ok: ${states.join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const nodes = ports.map((port) => ({ host: '127.0.0.1', port }));
    return {
      nodes,
      seeds: nodes.map((node) => `${node.host}:${node.port}`).join(','),
      async nodeOf(key) {
        const client = new Redis({ ...nodes[0]!, lazyConnect: true, maxRetriesPerRequest: 0 });
        client.on('error', () => undefined);
        try {
          await client.connect();
          const slot = Number(await client.cluster('KEYSLOT', key));
          const range = (await client.cluster('SLOTS')).find(([from, to]) => slot >= from && slot <= to);
          const master = range?.[2];
          if (!master) throw new Error(`no node serves slot ${slot}`);
          return { host: '127.0.0.1', port: master[1] };
        } finally {
          client.disconnect();
        }
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
