import { dropTestDatabase, listDatabases, TEST_DATABASE_PREFIX } from './test-db.js';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Drops throwaway databases left behind by test runs that were killed before their clean-up
 * (their creating process no longer exists), so the server does not fill up over time.
 */
export default async function setup(): Promise<void> {
  for (const name of await listDatabases(TEST_DATABASE_PREFIX)) {
    const pid = Number(/_(\d+)_[0-9a-f]{8}$/.exec(name)?.[1]);
    if (Number.isFinite(pid) && !isAlive(pid)) await dropTestDatabase(name);
  }
}
