import type { Command } from 'commander';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { integerAtLeast } from './parsers.js';

/** `lmsctl webhooks encrypt-secrets` */
export function registerWebhooks(program: Command, runtime: Runtime): void {
  const rewrites = 'changes what others share: rewrites the stored webhook secrets under a key set for the occasion';
  const webhooks = program
    .command('webhooks')
    .description('webhook subscriptions: their signing secrets at rest')
    .addHelpText(
      'after',
      examples({
        cmd: 'lmsctl webhooks encrypt-secrets',
        note: '(after migration 0011, or after a key rotation)',
        notRunHere: rewrites,
      }),
    );
  webhooks
    .command('encrypt-secrets')
    .description(
      'encrypt plain-text webhook signing secrets with WEBHOOK_SECRET_KEY and re-encrypt those under WEBHOOK_SECRET_KEY_PREVIOUS (key rotation); in batches, safe to re-run',
    )
    .option('--batch-size <n>', 'subscriptions per transaction', integerAtLeast(1), 100)
    .addHelpText(
      'after',
      examples(
        {
          cmd: 'lmsctl webhooks encrypt-secrets',
          note: '(after migration 0011, or after a key rotation)',
          notRunHere: rewrites,
        },
        {
          cmd: 'lmsctl webhooks encrypt-secrets --batch-size 500 --json',
          notRunHere: rewrites,
        },
      ),
    )
    .action(
      action(runtime, async (ctx, flags: { batchSize: number }) => {
        const { renderEncryptSecrets, webhooksEncryptSecrets } = await import('../commands/webhooks.js');
        ctx.out.result(await webhooksEncryptSecrets(ctx, { batchSize: flags.batchSize }), renderEncryptSecrets);
      }),
    );
}
