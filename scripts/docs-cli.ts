// Writes docs/cli.md from lmsctl's command definitions (`pnpm docs:cli`).
import { writeFile } from 'node:fs/promises';
import { renderCliReference } from '../packages/lmsctl/src/cli-docs.js';

await writeFile(new URL('../docs/cli.md', import.meta.url), renderCliReference());
console.log('wrote docs/cli.md');
