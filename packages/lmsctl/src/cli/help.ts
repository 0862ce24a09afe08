import type { Help } from 'commander';
import type { ExitCode } from '../errors.js';

/**
 * One line of a command's "Examples:" block: the command as typed (a shell line: quotes, pipes
 * and redirections allowed), and optionally what it does, shown after it.
 *
 * help-examples.test.ts finds every example in every --help, fails on one not declared here,
 * and runs each runnable one, so every example says how it ends:
 *
 * - `exits`: it runs on a CI machine and ends with this exit code there. It runs in bash, without
 *   a terminal (confirmations refuse), from a folder whose backups/db holds one verified backup of
 *   DATABASE_URL, a migrated database; REDIS_URL has empty queues but for one failed `emails` job
 *   with the id 1234; ADMIN_PASSWORD is set. Examples run in the order of the help texts and share
 *   the database and the backups.
 * - `notRunHere`: why it cannot run there: it needs Docker, Azure, a running API or a terminal;
 *   names a server, file or folder that exists only in the example; changes this machine or what
 *   others share on the test servers; undoes what later examples need; or never ends. The reason
 *   stays in the code; the help shows only the example.
 */
export type Example = { cmd: string; note?: string } & ({ exits: ExitCode } | { notRunHere: string });

/**
 * Every example built into a help text so far, by its line in the help (what follows `$ `); a
 * line declared twice with different classifications keeps both, for the test to report.
 */
const declared = new Map<string, Example[]>();

function declare(line: string, entry: Example): void {
  const known = declared.get(line) ?? [];
  if (!known.some((other) => JSON.stringify(other) === JSON.stringify(entry))) declared.set(line, [...known, entry]);
}

function render(entry: Example, noteColumn: number): string {
  return entry.note ? `${entry.cmd.padEnd(noteColumn)}${entry.note}` : entry.cmd;
}

/** The "Examples:" block at the end of a command's --help: each line a command, then what it does. */
export function examples(...entries: Example[]): string {
  const noteColumn = Math.max(0, ...entries.filter((entry) => entry.note).map((entry) => entry.cmd.length)) + 2;
  const lines = entries.map((entry) => {
    const line = render(entry, noteColumn);
    declare(line, entry);
    return `  $ ${line}`;
  });
  return `\nExamples:\n${lines.join('\n')}`;
}

/** The declarations behind an example line of a help text (what follows `$ `); none if `examples` did not make it. */
export function declaredExamples(line: string): Example[] {
  return declared.get(line) ?? [];
}

/**
 * Under "Global Options", a subcommand's help lists the program's options (--json, --yes,
 * --database-url, …), which every command takes. Commander would list the options of every
 * ancestor, but a parent's own options (`backup --encrypt`) do not apply to its subcommands
 * (`backup list`), and --version belongs to the program alone.
 */
export const helpConfiguration: Partial<Help> = {
  showGlobalOptions: true,
  visibleGlobalOptions(command) {
    let program = command;
    while (program.parent) program = program.parent;
    if (program === command) return [];
    return program.options.filter((option) => !option.hidden && option.attributeName() !== 'version');
  },
};
