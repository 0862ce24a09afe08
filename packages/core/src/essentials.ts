// What a short-lived command needs from @lms/core — configuration, connections, masking, errors,
// migration versions — without the rest of the barrel (the pino logger, job contracts, outbox,
// webhook targets, secret boxes), which lmsctl's backup, verify, restore and drill would load for
// nothing on every run (docs/benchmarks.md, backup-restore).
export * from './config.js';
export * from './db.js';
export * from './mask.js';
export * from './errors.js';
export * from './migrations/migration-files.js';
export * from './migrations/migrator.js';
