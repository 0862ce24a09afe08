import { Option, type Command } from 'commander';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';

/** `lmsctl user create` */
export function registerUser(program: Command, runtime: Runtime): void {
  const user = program
    .command('user')
    .description('manage accounts from the terminal (the first admin, service users)')
    .addHelpText(
      'after',
      examples({
        cmd: 'lmsctl user create --email ops@example.com --name Ops --role admin',
        note: '(asks for the password)',
        notRunHere: 'asks on a terminal',
      }),
    );
  user
    .command('create')
    .description('create an account; the password comes from stdin or a hidden prompt, never an argument')
    .requiredOption('--email <email>', 'e-mail address (the login)')
    .requiredOption('--name <name>', 'display name')
    .addOption(new Option('--role <role>', 'role').choices(['admin', 'instructor', 'student']).default('student'))
    .option('--password-stdin', 'read the password from standard input')
    .addHelpText(
      'after',
      examples(
        {
          cmd: 'lmsctl user create --email ops@example.com --name Ops --role admin',
          note: '(asks for the password)',
          notRunHere: 'asks on a terminal',
        },
        {
          cmd: 'printf %s "$ADMIN_PASSWORD" | lmsctl user create --email ops@example.com --name Ops --role admin --password-stdin',
          exits: 0,
        },
      ),
    )
    .action(
      action(
        runtime,
        async (
          ctx,
          flags: { email: string; name: string; role: 'admin' | 'instructor' | 'student'; passwordStdin?: boolean },
        ) => {
          const { promptPassword, readPasswordFromStdin, renderUserCreate, userCreate } =
            await import('../commands/user.js');
          const password = flags.passwordStdin ? await readPasswordFromStdin() : await promptPassword();
          ctx.out.result(
            await userCreate(ctx, { email: flags.email, name: flags.name, role: flags.role, password }),
            renderUserCreate,
          );
        },
      ),
    );
}
