import { readFileSync } from 'node:fs';

/** lmsctl's version, read from its package.json (the same relative path from src/ and dist/). */
export const lmsctlVersion: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
