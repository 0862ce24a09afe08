// Writes docs/configuration.md and .env.example from the config schema (`pnpm docs:config`).
import { writeFile } from 'node:fs/promises';
import { renderConfigurationMarkdown, renderEnvExample } from '@lms/core';

const root = new URL('../', import.meta.url);
await writeFile(new URL('docs/configuration.md', root), renderConfigurationMarkdown());
await writeFile(new URL('.env.example', root), renderEnvExample());
console.log('wrote docs/configuration.md and .env.example');
