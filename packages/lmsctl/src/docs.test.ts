import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { buildProgram } from './program.js';

/**
 * The Markdown documentation stays true to the CLI: every `lmsctl …` it shows (in code blocks
 * and inline code) names a command and options that exist, and every relative link points at a
 * file and heading that exist. docs/cli.md is generated from the program and checked elsewhere.
 */

const root = fileURLToPath(new URL('../../../', import.meta.url));

async function markdownPages(): Promise<string[]> {
  const pages = ['README.md', 'compose/README.md', 'compose/secrets/README.md'];
  for (const dir of ['docs', 'docs/runbooks']) {
    for (const file of await readdir(path.join(root, dir))) {
      if (file.endsWith('.md') && file !== 'cli.md') pages.push(`${dir}/${file}`);
    }
  }
  return pages.sort();
}

/** GitHub's anchor for a heading. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');

/** The `lmsctl …` command lines of a Markdown page: in code blocks and inline code. */
function lmsctlCommands(markdown: string): string[] {
  const snippets: string[] = [];
  for (const block of markdown.matchAll(/^```[^\n]*\n([\s\S]*?)^```/gm)) {
    snippets.push(...block[1]!.replace(/\\\n\s*/g, ' ').split('\n'));
  }
  for (const span of markdown.replace(/^```[\s\S]*?^```/gm, '').matchAll(/`([^`\n]+)`/g)) snippets.push(span[1]!);
  return snippets.flatMap((snippet) => {
    // A comment or a marker (`# BEGIN lmsctl lms`) is not a command.
    if (snippet.trimStart().startsWith('#')) return [];
    const match = /(?:^|[\s(])lmsctl\s+(.*)$/.exec(snippet);
    return match ? [match[1]!.split(/\s+(?:#|\||&&|;|>|│)/)[0]!.trim()] : [];
  });
}

type CliCommand = ReturnType<typeof buildProgram>;

/** The subcommand commander runs when none is named (`migrate` → `up`); commander keeps it private. */
function defaultSubcommand(command: CliCommand): string | undefined {
  return (command as unknown as { _defaultCommandName?: string })._defaultCommandName;
}

/** Null when `lmsctl <args>` names an existing command with existing options, else why not. */
function checkCommand(program: CliCommand, line: string): string | null {
  const tokens = line.match(/"[^"]*"|'[^']*'|\S+/g) ?? [];
  const chain: CliCommand[] = [program];
  let positional = false;
  for (let k = 0; k < tokens.length; k++) {
    const token = tokens[k]!;
    const command = chain.at(-1)!;
    const name = ['lmsctl', ...chain.slice(1).map((c) => c.name())].join(' ');
    if (/^-/.test(token)) {
      const flag = token.split('=')[0]!;
      if (flag === '-h' || flag === '--help') continue;
      let option = chain.flatMap((c) => c.options).find((o) => o.long === flag || o.short === flag);
      // `lmsctl migrate --dry-run` is `lmsctl migrate up --dry-run`: options of the default subcommand.
      const fallback = command.commands.find((c) => c.name() === defaultSubcommand(command));
      if (!option && fallback) {
        option = fallback.options.find((o) => o.long === flag || o.short === flag);
        if (option) chain.push(fallback);
      }
      if (!option) return `${name} has no option ${flag}`;
      if ((option.required || option.optional) && !token.includes('=')) k++;
    } else if (!positional && token.includes('|')) {
      // `lmsctl up|down|ps …`: each alternative must be a command.
      const missing = token.split('|').filter((alternative) => !command.commands.some((c) => c.name() === alternative));
      if (missing.length) return `${name} has no command ${missing.join(', ')}`;
      // The options that follow are checked against the first alternative.
      chain.push(command.commands.find((c) => c.name() === token.split('|')[0])!);
    } else if (!positional) {
      const sub = command.commands.find((c) => c.name() === token || c.aliases().includes(token));
      if (sub) chain.push(sub);
      else if (/[<…[]/.test(token) || command.registeredArguments.length > 0) positional = true;
      else return `${name} has no command ${token}`;
    }
  }
  return null;
}

describe('the Markdown docs', () => {
  it('links only to files and headings that exist', async () => {
    for (const page of await markdownPages()) {
      const text = await readFile(path.join(root, page), 'utf8');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue;
        const [file, anchor] = target!.split('#');
        const resolved = file ? path.resolve(root, path.dirname(page), file) : path.join(root, page);
        expect(existsSync(resolved), `${page}: ${target}`).toBe(true);
        if (anchor && resolved.endsWith('.md')) {
          const headings = [...(await readFile(resolved, 'utf8')).matchAll(/^#+\s+(.*)$/gm)].map((m) => slug(m[1]!));
          expect(headings, `${page}: ${target}`).toContain(anchor);
        }
      }
    }
  });

  it('names only lmsctl commands and options that exist', async () => {
    const program = buildProgram({ env: {}, cwd: root });
    const problems: string[] = [];
    let checked = 0;
    for (const page of await markdownPages()) {
      for (const line of lmsctlCommands(await readFile(path.join(root, page), 'utf8'))) {
        checked++;
        const problem = checkCommand(program, line);
        if (problem) problems.push(`${page}: lmsctl ${line} — ${problem}`);
      }
    }
    expect(problems).toEqual([]);
    expect(checked).toBeGreaterThan(50);
  });

  it('the command checker itself tells existing commands from others', () => {
    const program = buildProgram({ env: {}, cwd: root });
    expect(checkCommand(program, 'queue retry emails --all-failed')).toBeNull();
    expect(checkCommand(program, 'restore latest --yes --force-disconnect --jobs 4')).toBeNull();
    expect(checkCommand(program, 'backup --no-counts')).toBeNull();
    expect(checkCommand(program, 'queue retry emails --everything')).toMatch(/no option --everything/);
    expect(checkCommand(program, 'queue frobnicate')).toMatch(/no command frobnicate/);
    expect(checkCommand(program, 'migrate --dry-run --to 3')).toBeNull();
    expect(checkCommand(program, 'migrate --frobnicate')).toMatch(/no option --frobnicate/);
    expect(checkCommand(program, 'up|down|ps --env prod')).toBeNull();
    expect(checkCommand(program, 'up|down|frob')).toMatch(/no command frob/);
  });
});
