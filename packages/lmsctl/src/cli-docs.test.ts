import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { renderCliReference } from './cli-docs.js';

describe('docs/cli.md', () => {
  it('is up to date (run `pnpm docs:cli`)', async () => {
    const committed = await readFile(new URL('../../../docs/cli.md', import.meta.url), 'utf8');
    expect(committed).toBe(renderCliReference());
  });

  it('shows examples in the help of every command', () => {
    const sections = renderCliReference().split('\n## lmsctl').slice(1);
    expect(sections.length).toBeGreaterThan(40);
    const withoutExamples = sections.filter((section) => !section.includes('\nExamples:\n  $ lmsctl'));
    expect(withoutExamples.map((section) => section.split('\n')[0])).toEqual([]);
  });
});
