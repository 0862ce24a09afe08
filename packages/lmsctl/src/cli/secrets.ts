import { Option, type Command } from 'commander';
import type { RotateOptions } from '../commands/secrets/rotate.js';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';

/** `lmsctl secrets rotate` */
export function registerSecrets(program: Command, runtime: Runtime): void {
  const writesKey = 'writes a key file that exists only in the example';
  const secrets = program
    .command('secrets')
    .description('the keys of the deployment: rotate them without interrupting anyone')
    .addHelpText('after', examples({ cmd: 'lmsctl secrets rotate --what jwt --step stage', exits: 0 }));
  secrets
    .command('rotate')
    .description(
      'the steps of a key rotation (generate, stage, switch, retire): a new key, the variables to set at each step and the commands that show it took effect; changes nothing but the --out file',
    )
    .addOption(
      new Option('--what <secret>', 'jwt (SECRET_KEY), webhook (WEBHOOK_SECRET_KEY) or backup (LMS_BACKUP_KEY_FILE)')
        .choices(['jwt', 'webhook', 'backup'])
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--step <step>', 'only this step (default: all; only generate makes a key)').choices([
        'generate',
        'stage',
        'switch',
        'retire',
      ]),
    )
    .option('--out <file>', 'write the new key to this new file (mode 0600) instead of stdout; needed with --json')
    .addHelpText(
      'after',
      examples(
        {
          cmd: 'lmsctl secrets rotate --what jwt',
          note: '(prints a new key once, then the steps)',
          notRunHere: 'prints a key',
        },
        { cmd: 'lmsctl secrets rotate --what backup --out /etc/lms/backup-2.key', notRunHere: writesKey },
        { cmd: 'lmsctl secrets rotate --what webhook --step switch', exits: 0 },
        { cmd: 'lmsctl secrets rotate --what jwt --step stage', exits: 0 },
      ),
    )
    .action(
      action(runtime, async (ctx, flags: RotateOptions) => {
        const { renderRotation, rotateSecret } = await import('../commands/secrets/rotate.js');
        ctx.out.result(await rotateSecret(ctx, flags), renderRotation);
      }),
    );
}
