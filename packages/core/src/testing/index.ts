export * from './free-port.js';
export * from './test-db.js';
export * from './test-env.js';
export * from './streaming-replica.js';
export * from './pgbouncer.js';
