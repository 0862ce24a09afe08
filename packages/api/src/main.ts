import cluster from 'node:cluster';
import os from 'node:os';
import { AggregatorRegistry } from 'prom-client';
import { ConfigError, createLogger, errorMessage, loadConfig, type Config } from '@lms/core';
import { startServer } from './server.js';

/**
 * The API process entry point: validates the environment (every problem at once), then serves.
 * With API_WORKERS > 1 this process becomes a cluster primary that forks the servers, restarts
 * any that die, and aggregates their metrics for /metrics.
 */
const METRICS_REQUEST = 'lms:metrics:request';
const METRICS_REPLY = 'lms:metrics:reply';

function requireServerConfig(config: Config): Config & { SECRET_KEY: string; DATABASE_URL: string } {
  const problems: string[] = [];
  if (!config.SECRET_KEY) problems.push('SECRET_KEY: is required by the API (e.g. `openssl rand -hex 32`)');
  if (!config.DATABASE_URL) problems.push('DATABASE_URL: is required by the API');
  if (problems.length) throw new ConfigError(problems);
  return config as Config & { SECRET_KEY: string; DATABASE_URL: string };
}

function workerCount(setting: string): number {
  return setting === 'auto' ? os.availableParallelism() : Number(setting);
}

function runPrimary(count: number, logger: ReturnType<typeof createLogger>): void {
  const aggregator = new AggregatorRegistry();
  let stopping = false;
  const fork = () => cluster.fork();
  for (let index = 0; index < count; index++) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    logger.error({ pid: worker.process.pid, code, signal }, 'api worker died; starting another');
    // Not if a stop arrived during the pause: a process forked after it would never be told.
    setTimeout(() => {
      if (!stopping) fork();
    }, 1000);
  });
  cluster.on('message', (worker, message: { type?: string; id?: string }) => {
    if (message?.type !== METRICS_REQUEST) return;
    aggregator.clusterMetrics().then(
      (text) => worker.send({ type: METRICS_REPLY, id: message.id, text, contentType: aggregator.contentType }),
      (error: unknown) => worker.send({ type: METRICS_REPLY, id: message.id, error: errorMessage(error) }),
    );
  });
  const stop = () => {
    if (stopping) return;
    stopping = true;
    logger.info('stopping api workers');
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  logger.info({ workers: count }, 'api cluster started');
}

/**
 * In a cluster worker, /metrics asks the primary for the aggregate of all workers; a primary that
 * does not answer within 5 s fails the scrape instead of hanging it.
 */
function clusterMetrics(): Promise<{ contentType: string; text: string }> {
  return new Promise((resolve, reject) => {
    const id = `${process.pid}-${Date.now()}-${Math.random()}`;
    const timer = setTimeout(() => {
      process.off('message', onMessage);
      reject(new Error('the API primary process did not answer the metrics request within 5 s'));
    }, 5000);
    const onMessage = (message: {
      type?: string;
      id?: string;
      text?: string;
      contentType?: string;
      error?: string;
    }) => {
      if (message?.type !== METRICS_REPLY || message.id !== id) return;
      clearTimeout(timer);
      process.off('message', onMessage);
      if (message.error) reject(new Error(message.error));
      else resolve({ contentType: message.contentType!, text: message.text! });
    };
    process.on('message', onMessage);
    process.send!({ type: METRICS_REQUEST, id });
  });
}

async function main(): Promise<void> {
  let config: Config & { SECRET_KEY: string; DATABASE_URL: string };
  try {
    config = requireServerConfig(loadConfig());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`lms api: ${error.message}\n`);
    process.exitCode = 1;
    return;
  }
  const logger = createLogger({ name: 'api', level: config.LOG_LEVEL });
  const workers = workerCount(config.API_WORKERS);
  if (workers > 1 && cluster.isPrimary) {
    runPrimary(workers, logger);
    return;
  }

  let running;
  try {
    running = await startServer(config, { logger, metrics: cluster.isWorker ? clusterMetrics : undefined });
  } catch (error) {
    // A busy port or an address not of this machine: one log line, not an unhandled stack.
    logger.fatal({ err: error }, 'the api could not start');
    process.exitCode = 1;
    return;
  }
  const stop = () => {
    running.stop().then(
      () => {
        process.exitCode = 0;
        // A cluster worker's IPC channel would keep it alive; closing it lets the process end.
        if (cluster.isWorker) process.disconnect();
      },
      (error: unknown) => {
        logger.error({ err: error }, 'error while stopping');
        process.exitCode = 1;
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

await main();
