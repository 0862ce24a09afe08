import type { Command } from 'commander';
import { buildProgram } from './program.js';

/** The help screens are rendered at this width so the reference does not depend on the terminal. */
const HELP_WIDTH = 100;

/** `lmsctl backup list`: the names from the program down to `command`. */
export function commandPath(command: Command): string {
  const names: string[] = [];
  for (let current: Command | null = command; current; current = current.parent) names.unshift(current.name());
  return names.join(' ');
}

/** What `--help` prints for `command`, at the reference's fixed width and without colour. */
export function helpOf(command: Command): string {
  let text = '';
  command.configureOutput({
    writeOut: (chunk) => (text += chunk),
    getOutHelpWidth: () => HELP_WIDTH,
    getOutHasColors: () => false,
  });
  // outputHelp (not helpInformation) so the examples added with addHelpText come along.
  command.outputHelp();
  return text.trimEnd();
}

/** `command` and every command below it, depth first in registration order (without `help`). */
export function walk(command: Command): Command[] {
  return [command, ...command.commands.filter((child) => child.name() !== 'help').flatMap(walk)];
}

/** docs/cli.md: every command's --help, in registration order, generated from the program itself. */
export function renderCliReference(): string {
  const program = buildProgram({ env: {}, cwd: '/' });
  const commands = walk(program);
  const lines = [
    '# lmsctl command reference',
    '',
    '<!-- Generated from the command definitions by `pnpm docs:cli`; edit packages/lmsctl/src/cli/*.ts instead. -->',
    '',
    'Every command below is also `lmsctl <command> --help`. How the commands fit together in daily',
    'operation: [operations guide](operations.md); backups, restores and drills in depth:',
    '[backups.md](backups.md).',
    '',
    '## Contents',
    '',
    ...commands.slice(1).map((command) => {
      const name = commandPath(command);
      return `- [\`${name}\`](#${name.replace(/ /g, '-')}) — ${command.description()}`;
    }),
    '',
  ];
  for (const command of commands) {
    const name = commandPath(command);
    lines.push(`## ${name}`, '', '```text', helpOf(command), '```', '');
  }
  return lines.join('\n');
}
