/** The "Examples:" block at the end of a command's --help: each line a command, then what it does. */
export function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((line) => `  $ ${line}`).join('\n')}`;
}
