import { Option, type Command } from 'commander';
import type { CommandContext } from '../context.js';
import { usageError } from '../errors.js';
import { action, type Runtime } from './action.js';
import { examples } from './help.js';
import { durationMs, integerAtLeast } from './parsers.js';

const envOption = () =>
  new Option('--env <env>', 'which stack').choices(['dev', 'staging', 'prod', 'observability']).default('dev');

const projectOption = () =>
  new Option(
    '--project-name <name>',
    'the Compose project (default: COMPOSE_PROJECT_NAME, else lms-dev, lms or lms-staging by --env)',
  );

const overrideOption = () =>
  new Option('--override <file...>', "more Compose files applied on top of the environment's, in order");

export const orchestratorOption = () =>
  new Option(
    '--orchestrator <name>',
    'compose (one host) or swarm (a Swarm stack; default when the engine is a manager running this project as one)',
  ).choices(['compose', 'swarm']);

interface EnvFlags {
  env: 'dev' | 'staging' | 'prod' | 'observability';
  projectName?: string;
  override?: string[];
  orchestrator?: 'compose' | 'swarm';
}

/** Swarm when asked for, or when the engine runs the project as a Swarm stack (and not --native). */
async function onSwarm(ctx: CommandContext, flags: EnvFlags): Promise<boolean> {
  if (flags.orchestrator) return flags.orchestrator === 'swarm';
  if (flags.env === 'dev' || flags.env === 'observability') return false;
  const { connectEngine } = await import('../lib/compose/docker-engine.js');
  const docker = await connectEngine(ctx.env);
  if (!docker) return false;
  const { resolveStack } = await import('../lib/compose/compose-cli.js');
  const { chooseOrchestrator } = await import('../commands/stack/swarm.js');
  const { project } = resolveStack({ ...stackOf(flags), envFile: ctx.envFile }, ctx.env, ctx.cwd);
  return (await chooseOrchestrator(docker, project, undefined)) === 'swarm';
}

/** The stack the flags address, as the stack commands take it. */
const stackOf = (flags: EnvFlags) => ({ env: flags.env, projectName: flags.projectName, overrides: flags.override });

/** `lmsctl up|down|ps|logs|restart|config` and `lmsctl seed` */
export function registerStack(program: Command, runtime: Runtime): void {
  program
    .command('up')
    .description('start the stack with Docker Compose, or (no Docker, or --native) the dev stack as local processes')
    .argument('[services...]', 'only these services')
    .addOption(envOption())
    .addOption(projectOption())
    .addOption(overrideOption())
    .option('--wait', 'follow container health until everything is healthy (or fails, or --timeout)')
    .addOption(new Option('--timeout <duration>', 'how long --wait waits').argParser(durationMs).default(300_000, '5m'))
    .option('--build', 'rebuild the images the stack builds (missing ones are always built)')
    .option('--native', 'run PostgreSQL, Redis, the API and the worker as local processes (dev only)')
    .option('--host <address>', 'natively: the address the API and the worker listen on (default 127.0.0.1)')
    .addOption(orchestratorOption())
    .addHelpText(
      'after',
      `
Compose files per --env: dev = compose/docker-compose.yml; prod = docker-compose.prod.yml;
staging = prod + docker-compose.staging.yml; observability = prod + docker-compose.observability.yml.
Images missing here are pulled first (nothing is created when a pull fails) and the stack's own
images are built with BuildKit (a docker CLI with buildx, or one older than 23.0), whichever
Compose is installed. If \`up\` fails on a new project, the network and volumes it created are
removed again. One-shot services (migrate) count as done for --wait when they exited 0.
Without a Docker engine, \`lmsctl up\` (dev) runs natively: DATABASE_URL and REDIS_URL when they
answer (no DATABASE_URL: the local PostgreSQL on 127.0.0.1:5432 as your user, database lms_dev),
else an embedded PostgreSQL (.lms/postgres) and a local redis-server; then migrations,
demo data, the API and the worker. Ctrl-C stops everything. Natively everything listens on
127.0.0.1 only (the demo passwords work for anyone who reaches the API); --host 0.0.0.0 opens the
API and the worker to the network. PORT and WORKER_METRICS_PORT must be free.
With --orchestrator swarm (prod or staging, on a Swarm manager) the same Compose file runs as a
Swarm stack (docker stack deploy): secrets as Docker secrets, the Caddyfile as a config, rolling
updates start-first with automatic rollback; PostgreSQL and Redis first on a new stack, then the
migrations in a one-off container, then everything (docs/operations.md, "Several hosts: Swarm").
With --json: the result (services and health; natively, the addresses once everything answers)
is one JSON document on stdout; Compose's output and the processes' logs go to stderr.
${examples(
  {
    cmd: 'lmsctl up',
    note: 'dev stack (Docker, or native without it)',
    notRunHere: 'starts the whole stack and runs until Ctrl-C',
  },
  {
    cmd: 'lmsctl up --native',
    note: 'always as local processes',
    notRunHere: 'starts the whole stack and runs until Ctrl-C',
  },
  {
    cmd: 'lmsctl up --native --host 0.0.0.0',
    note: 'reachable from other machines (phones, VMs)',
    notRunHere: 'starts the whole stack and runs until Ctrl-C',
  },
  { cmd: 'lmsctl up --env prod --wait --timeout 10m', notRunHere: 'needs Docker and the production images' },
  { cmd: 'lmsctl up --env staging api worker', notRunHere: 'needs Docker and the staging images' },
  {
    cmd: 'lmsctl up --env prod --orchestrator swarm --wait',
    note: 'as a Swarm stack',
    notRunHere: 'needs a Swarm manager and the production images',
  },
)}`,
    )
    .action(
      action(
        runtime,
        async (
          ctx,
          services: string[],
          flags: EnvFlags & { wait?: boolean; timeout: number; build?: boolean; native?: boolean; host?: string },
        ) => {
          const native =
            flags.native ||
            (flags.env === 'dev' &&
              !(await import('../lib/compose/docker-engine.js').then((engine) => engine.connectEngine(ctx.env))));
          if (native) {
            if (!flags.native)
              ctx.out.info('no Docker engine answers: running the dev stack as local processes (--native)');
            const { nativeUp } = await import('../commands/stack/native.js');
            await nativeUp(ctx, { env: flags.env, host: flags.host });
            return;
          }
          if (flags.host !== undefined)
            throw usageError('--host sets where the native dev stack listens: add --native, or drop --host');
          const { renderUp, stackUp } = await import('../commands/stack/compose.js');
          if (await onSwarm(ctx, flags)) {
            if (services.length) throw usageError('a Swarm stack is deployed whole: drop the service names');
            const { swarmUp } = await import('../commands/stack/swarm.js');
            ctx.out.result(
              await swarmUp(ctx, { ...stackOf(flags), wait: flags.wait, timeoutMs: flags.timeout, build: flags.build }),
              renderUp,
            );
            return;
          }
          ctx.out.result(
            await stackUp(ctx, {
              ...stackOf(flags),
              services,
              wait: flags.wait,
              timeoutMs: flags.timeout,
              build: flags.build,
            }),
            renderUp,
          );
        },
      ),
    );

  program
    .command('down')
    .description('stop and remove the containers; --volumes also deletes the data (asks first)')
    .addOption(envOption())
    .addOption(projectOption())
    .addOption(overrideOption())
    .option('--volumes', 'also delete the named volumes: database, Redis, backups, metrics')
    .addOption(orchestratorOption())
    .addHelpText(
      'after',
      examples(
        { cmd: 'lmsctl down', notRunHere: 'needs Docker and stops a stack' },
        {
          cmd: 'lmsctl down --env staging --volumes --yes',
          notRunHere: 'needs Docker and deletes the volumes of a stack',
        },
      ),
    )
    .action(
      action(runtime, async (ctx, flags: EnvFlags & { volumes?: boolean }) => {
        const { stackDown } = await import('../commands/stack/compose.js');
        const { swarmDown } = await import('../commands/stack/swarm.js');
        const down = (await onSwarm(ctx, flags)) ? swarmDown : stackDown;
        const result = await down(ctx, { ...stackOf(flags), volumes: flags.volumes });
        ctx.out.result(result, (r) => `stopped ${r.project}${r.volumesRemoved ? ' and deleted its volumes' : ''}`);
      }),
    );

  program
    .command('ps')
    .description('the containers of the stack with their state and health (from the Docker Engine API)')
    .addOption(envOption())
    .addOption(projectOption())
    .addOption(overrideOption())
    .addOption(orchestratorOption())
    .addHelpText(
      'after',
      examples(
        { cmd: 'lmsctl ps', notRunHere: 'needs Docker' },
        { cmd: 'lmsctl ps --env prod --json', notRunHere: 'needs Docker' },
      ),
    )
    .action(
      action(runtime, async (ctx, flags: EnvFlags) => {
        const { renderServices, stackPs } = await import('../commands/stack/compose.js');
        const { swarmPs } = await import('../commands/stack/swarm.js');
        const ps = (await onSwarm(ctx, flags)) ? swarmPs : stackPs;
        ctx.out.result(await ps(ctx, stackOf(flags)), (result, style) => renderServices(result.services, style));
      }),
    );

  program
    .command('logs')
    .description('the logs of the stack or of one service')
    .argument('[service]', 'only this service (default: all)')
    .addOption(envOption())
    .addOption(projectOption())
    .addOption(overrideOption())
    .option('-f, --follow', 'keep following')
    .option('--tail <n>', 'only the last n lines per service', integerAtLeast(0))
    .addHelpText(
      'after',
      `
With --json: one JSON object per log line, {"container": "api-1", "line": "…"} with passwords
masked, as the lines come (with -f until Ctrl-C); lines of Compose's own have "container": null.
${examples(
  { cmd: 'lmsctl logs api -f', notRunHere: 'needs Docker and follows until Ctrl-C' },
  { cmd: 'lmsctl logs --env prod --tail 100 worker', notRunHere: 'needs Docker and a running stack' },
)}`,
    )
    .action(
      action(
        runtime,
        async (ctx, service: string | undefined, flags: EnvFlags & { follow?: boolean; tail?: number }) => {
          const { stackLogs } = await import('../commands/stack/compose.js');
          await stackLogs(ctx, { ...stackOf(flags), service, follow: flags.follow, tail: flags.tail });
        },
      ),
    );

  program
    .command('restart')
    .description('restart the stack or one service')
    .argument('[service]', 'only this service (default: all)')
    .addOption(envOption())
    .addOption(projectOption())
    .addOption(overrideOption())
    .addHelpText(
      'after',
      examples(
        { cmd: 'lmsctl restart worker', notRunHere: 'needs Docker and a running stack' },
        { cmd: 'lmsctl restart --env prod api', notRunHere: 'needs Docker and a running stack' },
      ),
    )
    .action(
      action(runtime, async (ctx, service: string | undefined, flags: EnvFlags) => {
        const { stackRestart } = await import('../commands/stack/compose.js');
        ctx.out.result(
          await stackRestart(ctx, { ...stackOf(flags), service }),
          (r) => `restarted ${r.restarted} of ${r.project}`,
        );
      }),
    );

  program
    .command('config')
    .description('the resolved Compose configuration of an environment (what up would run)')
    .addOption(envOption())
    .addOption(projectOption())
    .addOption(overrideOption())
    .addHelpText(
      'after',
      `
Prints Compose's YAML, values from the env file filled in. With --json: {"env", "project",
"config"}, the configuration as JSON with secrets masked (passwords, keys, URLs' passwords).
${examples({
  cmd: 'lmsctl config --env prod --env-file /etc/lms/prod.env',
  notRunHere: 'the env file of the example',
})}`,
    )
    .action(
      action(runtime, async (ctx, flags: EnvFlags) => {
        const { stackConfig } = await import('../commands/stack/compose.js');
        const { yaml, ...result } = await stackConfig(ctx, stackOf(flags));
        ctx.out.result(result, () => yaml);
      }),
    );

  program
    .command('seed')
    .description('load demo data (an admin, instructors, courses, quizzes, learners) into an empty dev database')
    .addHelpText(
      'after',
      examples({
        cmd: 'lmsctl seed --database-url postgres://lms@127.0.0.1/lms_dev',
        notRunHere: 'the database lms_dev of the example',
      }),
    )
    .action(
      action(runtime, async (ctx) => {
        const { renderSeed, seed, seedResultForJson } = await import('../commands/seed.js');
        const result = await seed(ctx);
        if (ctx.json) ctx.out.result(seedResultForJson(result), () => '');
        else ctx.out.result(result, renderSeed);
      }),
    );
}
