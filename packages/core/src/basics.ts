// The part of @lms/core/essentials that needs no database driver: configuration, masking, errors,
// migration files. `pg` alone takes some 70 ms to load on Node 20 (it builds a fetch Response at
// load to detect Cloudflare Workers, which loads undici), so commands that never connect —
// `backup verify`, `--help` — import this instead (docs/benchmarks.md, backup-restore).
export * from './config.js';
export * from './mask.js';
export * from './errors.js';
export * from './migrations/migration-files.js';
