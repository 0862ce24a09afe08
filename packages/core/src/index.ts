export * from './config.js';
export * from './db.js';
export * from './replica-lag.js';
export * from './transaction.js';
export * from './query-result.js';
export * from './errors.js';
export * from './ids.js';
export * from './jobs.js';
export * from './outbox.js';
export * from './logger.js';
export * from './log-throttle.js';
export * from './mask.js';
export * from './migrations/migration-files.js';
export * from './migrations/migrator.js';
export * from './config-docs.js';
export * from './redis.js';
export * from './duration.js';
export * from './webhook-targets.js';
export * from './secret-box.js';
export * from './access-token-keys.js';
// Heavier modules are subpath exports, so a process loads them only when it uses them:
// @lms/core/queue (BullMQ producer), @lms/core/webhook-events, @lms/core/passwords (argon2).
