import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * A secret of the dev stack kept in its data folder (`.lms/<name>`, mode 0600), made on first
 * use, so the API's SECRET_KEY and the embedded PostgreSQL's password stay the same across runs.
 */
export async function devSecret(dataDir: string, name: string): Promise<string> {
  const file = path.join(dataDir, name);
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    const value = randomBytes(32).toString('hex');
    await writeFile(file, `${value}\n`, { mode: 0o600 });
    return value;
  }
}
