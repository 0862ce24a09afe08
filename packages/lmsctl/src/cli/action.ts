import type { Command } from 'commander';
import type { CommandContext, CreateContextOptions } from '../context.js';

/** Process-level inputs the program runs with; tests substitute their own. */
export interface Runtime {
  env: NodeJS.ProcessEnv;
  cwd: string;
  streams?: CreateContextOptions['streams'];
}

/**
 * Wraps a command body as a commander action: builds the context (env file, config, output)
 * from the global options only when the command actually runs, so `--help` never pays for it.
 */
export function action<Args extends unknown[]>(
  runtime: Runtime,
  body: (ctx: CommandContext, ...args: Args) => Promise<void>,
): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    const command = args.at(-1) as Command;
    const { createContext } = await import('../context.js');
    const merged = command.optsWithGlobals();
    const ctx = createContext({ ...merged, ...runtime });
    // Commander hands an option given after a subcommand (`backup list --dir x`) to the parent
    // that also defines it; the merged view gives the subcommand what the user typed.
    const operands = args.slice(0, -2);
    await body(ctx, ...([...operands, merged] as Args));
  };
}
