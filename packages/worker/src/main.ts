import { ConfigError, createLogger, errorMessage, loadConfig, loadEnvFile, maskSecretsInText } from '@lms/core';
import { parseWorkerArgs, schedulerEnabled, usage, UsageError } from './cli-options.js';
import { startWorkerProcess } from './runtime/worker-process.js';

/**
 * The worker's entry point: arguments → configuration → logger → workers; SIGTERM/SIGINT stop
 * it gracefully (no new jobs, running ones finish within their limits, connections closed) and
 * a second signal stops it at once (running jobs are recovered by another worker once their
 * lock expires). Exit codes: 0 stopped, 1 failed, 2 bad command line.
 */
async function main(argv: string[]): Promise<number> {
  let options;
  try {
    options = parseWorkerArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`worker: ${error.message}\n\n${usage}`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(usage);
    return 0;
  }
  if (options.envFile) {
    try {
      loadEnvFile(options.envFile, process.env);
    } catch (error) {
      process.stderr.write(`worker: ${errorMessage(error)}\n`);
      return 2;
    }
  }
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`worker: ${error.message}\n`);
    return 1;
  }
  const logger = createLogger({ level: config.LOG_LEVEL, name: 'worker' });
  // A stray rejection is a bug worth a log line, not a reason to drop every running job.
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled promise rejection'));

  let worker;
  try {
    worker = await startWorkerProcess({
      config,
      logger,
      queues: options.queues,
      scheduler: schedulerEnabled(options.scheduler, config),
      recovery: options.recovery,
    });
  } catch (error) {
    logger.fatal({ err: error }, `the worker could not start: ${maskSecretsInText(errorMessage(error))}`);
    return 1;
  }

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  logger.info({ signal }, 'stopping: no new jobs; waiting for the running ones');
  const forced = new Promise<number>((resolve) => {
    const force = (again: NodeJS.Signals) => {
      logger.warn({ signal: again }, 'stopping now: running jobs return to their queue when their lock expires');
      resolve(1);
    };
    process.once('SIGTERM', force);
    process.once('SIGINT', force);
  });
  return Promise.race([
    worker.shutdown().then(() => {
      logger.info('stopped');
      return 0;
    }),
    forced,
  ]);
}

const code = await main(process.argv.slice(2));
// The entry point exits explicitly: an abandoned (hard-limited) handler may still hold timers or sockets.
// eslint-disable-next-line no-restricted-properties
process.exit(code);
