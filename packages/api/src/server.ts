import cluster from 'node:cluster';
import type { Server } from 'node:http';
import { AggregatorRegistry } from 'prom-client';
import { once } from 'node:events';
import type { Config, Logger } from '@lms/core';
import { createApp, type AppOptions } from './app.js';
import { closeDeps, createDeps } from './deps.js';

/** How long in-flight requests may take to finish after SIGTERM before connections are cut. */
const DRAIN_MS = 10_000;

export interface RunningServer {
  server: Server;
  port: number;
  /** Stops accepting, lets in-flight requests finish (≤ 10 s), then closes PostgreSQL and Redis. */
  stop(): Promise<void>;
}

export async function startServer(
  config: Config & { SECRET_KEY: string; DATABASE_URL: string },
  options: AppOptions & { logger?: Logger; port?: number } = {},
): Promise<RunningServer> {
  const deps = createDeps(config, { logger: options.logger });
  // In a cluster worker, the primary collects this process's metrics for the aggregate /metrics.
  // prom-client answers the primary's requests only once an AggregatorRegistry exists here.
  if (cluster.isWorker) {
    AggregatorRegistry.setRegistries([deps.metrics.registry]);
    new AggregatorRegistry();
  }
  const app = createApp(deps, options);
  const port = options.port ?? config.PORT;
  // No HOST: Node's default, every interface (IPv6 and IPv4).
  const server = config.HOST === undefined ? app.listen(port) : app.listen(port, config.HOST);
  try {
    await once(server, 'listening');
  } catch (error) {
    // A busy port: the pool and Redis would keep the process alive after the caller gave up.
    await closeDeps(deps);
    throw error;
  }
  const address = server.address();
  const listening = typeof address === 'object' && address ? address.port : port;
  deps.logger.info({ port: listening }, 'api listening');
  let stopping: Promise<void> | null = null;
  return {
    server,
    port: listening,
    stop() {
      stopping ??= (async () => {
        deps.logger.info('stopping: no new connections, finishing requests in flight');
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const timer = setTimeout(() => server.closeAllConnections(), DRAIN_MS);
        await closed;
        clearTimeout(timer);
        await closeDeps(deps);
        deps.logger.info('stopped');
        deps.logger.flush();
      })();
      return stopping;
    },
  };
}
