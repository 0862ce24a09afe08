// What a short-lived command needs from @lms/core — configuration, connections, masking, errors,
// migration versions — without the rest of the barrel (the pino logger, job contracts, outbox,
// webhook targets, secret boxes), which lmsctl's backup, verify, restore and drill would load for
// nothing on every run (docs/benchmarks.md, backup-restore). Without connections: ./basics.js.
export * from './basics.js';
export * from './db.js';
export * from './migrations/migrator.js';
