import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { renderConfigurationMarkdown, renderEnvExample } from './config-docs.js';
import { configFields, loadConfig } from './config.js';
import { parseEnv } from 'node:util';

const root = new URL('../../../', import.meta.url);

describe('generated configuration docs', () => {
  it('docs/configuration.md is up to date (run `pnpm docs:config`)', async () => {
    expect(await readFile(new URL('docs/configuration.md', root), 'utf8')).toBe(renderConfigurationMarkdown());
  });

  it('.env.example is up to date (run `pnpm docs:config`)', async () => {
    expect(await readFile(new URL('.env.example', root), 'utf8')).toBe(renderEnvExample());
  });

  it('.env.example names every variable and is itself a valid configuration', () => {
    const text = renderEnvExample();
    for (const name of Object.keys(configFields)) expect(text).toMatch(new RegExp(`^#? ?${name}=`, 'm'));
    expect(() => loadConfig(parseEnv(text))).not.toThrow();
  });
});
