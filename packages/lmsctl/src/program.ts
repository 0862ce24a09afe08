import { Command, CommanderError } from 'commander';
import type { Runtime } from './cli/action.js';
import { registerAzure } from './cli/azure.js';
import { registerBackup } from './cli/backup.js';
import { registerDb } from './cli/db.js';
import { registerDeploy } from './cli/deploy.js';
import { registerDrill } from './cli/drill.js';
import { examples, helpConfiguration } from './cli/help.js';
import { postgresUrl } from './cli/parsers.js';
import { registerMigrate } from './cli/migrate.js';
import { registerQueue } from './cli/queue.js';
import { registerRestore } from './cli/restore.js';
import { registerSchedule } from './cli/schedule.js';
import { registerSecrets } from './cli/secrets.js';
import { registerStack } from './cli/stack.js';
import { registerCheck } from './cli/check.js';
import { registerStatus } from './cli/status.js';
import { registerUser } from './cli/user.js';
import { registerWebhooks } from './cli/webhooks.js';
import { lmsctlVersion } from './version.js';

/**
 * The whole command tree. Registration only: every command body is imported when that
 * command runs, so building the program (and `lmsctl --help`) stays cheap.
 */
export function buildProgram(runtime: Runtime): Command {
  const program = new Command('lmsctl')
    .description('Operations CLI for the LMS: migrations, backups, restores, drills, queues, Azure and the stack.')
    .option('-V, --version', 'print the lmsctl version (with --json: {"version": …})')
    .option('--json', 'machine-readable result on stdout (logs stay on stderr)')
    .option('-y, --yes', 'confirm destructive actions without asking')
    .option('--env-file <path>', 'read variables from this file (default: .env when present; set variables win)')
    .option(
      '--database-url <url>',
      'PostgreSQL URL (default: DATABASE_URL, or DATABASE_DIRECT_URL when set for migrate, backup, restore, drill, db maintain)',
      postgresUrl('--database-url'),
    )
    .option('-v, --verbose', 'more detail on stderr')
    .helpOption('-h, --help', 'show help for a command')
    .showHelpAfterError('(run with --help for usage)')
    // Set before the commands are added, which copy it: their help lists the global options.
    .configureHelp(helpConfiguration)
    .exitOverride()
    .addHelpText(
      'after',
      `
Exit codes: 0 done, 1 failed, 2 usage error or refused confirmation, 3 verification failed.
Colour is off when NO_COLOR is set or the output is not a terminal.
${examples(
  { cmd: 'lmsctl migrate --database-url postgres://lms@db:5432/lms', notRunHere: 'the server db:5432 of the example' },
  { cmd: 'lmsctl migrate status --json', exits: 0 },
)}`,
    );
  program.configureOutput({
    writeOut: (text) => (runtime.streams?.stdout ?? process.stdout).write(text),
    writeErr: (text) => (runtime.streams?.stderr ?? process.stderr).write(text),
  });
  // Not commander's .version(), which prints text: main prints it, as JSON with --json.
  program.on('option:version', () => {
    throw new CommanderError(0, 'commander.version', lmsctlVersion);
  });

  registerMigrate(program, runtime);
  registerBackup(program, runtime);
  registerRestore(program, runtime);
  registerDrill(program, runtime);
  registerSchedule(program, runtime);
  registerQueue(program, runtime);
  registerStatus(program, runtime);
  registerCheck(program, runtime);
  registerUser(program, runtime);
  registerWebhooks(program, runtime);
  registerSecrets(program, runtime);
  registerDb(program, runtime);
  registerStack(program, runtime);
  registerDeploy(program, runtime);
  registerAzure(program, runtime);

  // Subcommands inherit exit handling and output settings from the program.
  for (const command of program.commands) command.copyInheritedSettings(program);
  return program;
}
