import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { timeCommands, type Benchmark } from './lib.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const RUNS = 15;

/**
 * `lmsctl --help` must answer fast: command bodies, the database driver and the config
 * library load only when a command runs. Anchors: a bare Node start, and a start that loads
 * everything eagerly (what --help would cost without lazy loading).
 */
export const cliStartup: Benchmark = {
  id: 'cli-startup',
  async run() {
    await promisify(execFile)('pnpm', ['build'], { cwd: root });
    const node = process.execPath;
    const entry = 'packages/lmsctl/dist/index.js';
    const eager = `process.argv = [process.argv[0], 'lmsctl', '--help']; await import('@lms/core'); await import('./packages/lmsctl/dist/commands/migrate.js'); await import('./${entry}');`;
    const times = await timeCommands(
      {
        bare: { file: node, args: ['-e', '0'], cwd: root },
        help: { file: node, args: [entry, '--help'], cwd: root },
        eager: { file: node, args: ['--input-type=module', '-e', eager], cwd: root },
      },
      RUNS,
    );
    return {
      id: 'cli-startup',
      title: '`lmsctl --help` start-up',
      method: `Built CLI (\`node packages/lmsctl/dist/index.js --help\`), median wall time of ${RUNS} runs interleaved with the anchors.`,
      comparisons: [
        {
          what: '`lmsctl --help`',
          value: times.help!,
          anchorName: 'bare `node -e 0`',
          anchor: times.bare!,
          unit: 'ms',
          limit: 2.5,
          direction: 'at-most',
        },
        {
          what: '`lmsctl --help`',
          value: times.help!,
          anchorName: 'same, loading every command body eagerly',
          anchor: times.eager!,
          unit: 'ms',
          limit: 0.9,
          direction: 'at-most',
        },
      ],
    };
  },
};
