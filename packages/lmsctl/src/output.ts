import { stripVTControlCharacters } from 'node:util';
import { Chalk, type ChalkInstance } from 'chalk';

export interface OutputStreams {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

export interface OutputOptions {
  json: boolean;
  verbose: boolean;
  env?: NodeJS.ProcessEnv;
  streams?: OutputStreams;
}

function colourFor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv): ChalkInstance {
  // NO_COLOR (https://no-color.org) wins over everything; otherwise colour only on a terminal.
  const wanted = !('NO_COLOR' in env) && env.TERM !== 'dumb' && (stream.isTTY === true || 'FORCE_COLOR' in env);
  return new Chalk({ level: wanted ? 1 : 0 });
}

/**
 * The only way commands write to the terminal. The result goes to stdout — JSON with `--json`,
 * else its human rendering; logs, progress and prompts go to stderr so stdout stays parseable.
 */
export class Output {
  readonly json: boolean;
  readonly verbose: boolean;
  /** Styles for text written to stdout / stderr (plain when that stream is not a TTY or NO_COLOR is set). */
  readonly style: ChalkInstance;
  readonly errStyle: ChalkInstance;
  readonly streams: OutputStreams;

  constructor(options: OutputOptions) {
    const env = options.env ?? process.env;
    this.json = options.json;
    this.verbose = options.verbose;
    this.streams = options.streams ?? { stdout: process.stdout, stderr: process.stderr };
    this.style = colourFor(this.streams.stdout, env);
    this.errStyle = colourFor(this.streams.stderr, env);
  }

  /** True when stderr is a terminal (progress displays and prompts make sense). */
  get stderrIsTTY(): boolean {
    return this.streams.stderr.isTTY === true;
  }

  /** Writes the command's result: `data` as JSON with --json, else `render(data)`. */
  result<T>(data: T, render: (data: T, style: ChalkInstance) => string): void {
    if (this.json) {
      this.streams.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
      return;
    }
    const text = render(data, this.style);
    if (text) this.streams.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  info(message: string): void {
    this.streams.stderr.write(`${message}\n`);
  }

  success(message: string): void {
    this.streams.stderr.write(`${this.errStyle.green('✔')} ${message}\n`);
  }

  warn(message: string): void {
    this.streams.stderr.write(`${this.errStyle.yellow('warning:')} ${message}\n`);
  }

  error(message: string, hint?: string): void {
    this.streams.stderr.write(`${this.errStyle.red('error:')} ${message}\n`);
    if (hint) this.streams.stderr.write(`${this.errStyle.dim(hint)}\n`);
  }

  debug(message: string): void {
    if (this.verbose) this.streams.stderr.write(`${this.errStyle.dim(message)}\n`);
  }
}

/** Renders rows as aligned columns; the header is dimmed. */
export function table(headers: string[], rows: string[][], style: ChalkInstance): string {
  // Column widths ignore ANSI colour codes so coloured cells still line up.
  const visible = (text: string) => stripVTControlCharacters(text).length;
  const widths = headers.map((header, index) =>
    Math.max(visible(header), ...rows.map((row) => visible(row[index] ?? ''))),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, index) => (index === cells.length - 1 ? cell : cell + ' '.repeat(widths[index]! - visible(cell))))
      .join('  ')
      .trimEnd();
  return [style.dim(line(headers)), ...rows.map(line)].join('\n');
}
