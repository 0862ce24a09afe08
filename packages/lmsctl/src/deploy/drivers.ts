import { CliError, ExitCode } from '../errors.js';
import { ComposeFailed, runCompose } from '../lib/compose/compose-cli.js';
import type { SwarmStack } from '../lib/swarm/stack-file.js';
import {
  failedTasksSince,
  rollbackService,
  runLmsctl,
  stackServices,
  updateServiceImage,
  type SwarmService,
  type SwarmTarget,
} from '../lib/swarm/swarm.js';
import { caddyRouting, type CaddyRouting } from './caddy-routing.js';
import {
  composeWithImage,
  replaceApiContainers,
  replaceBackgroundServices,
  RolloutFailed,
  runningContainers,
  type RollingStack,
  type StackContainer,
} from './rolling.js';

/**
 * What differs between one host (Compose, lmsctl replaces the containers itself) and a Swarm
 * (the engine rolls the services): everything else of a deploy — preflight, staging gate,
 * migrations, watch window, history — is the same for both (deploy.ts).
 */
export interface DeployDriver {
  orchestrator: 'compose' | 'swarm';
  /** The image the API runs now; a CliError when the stack does not run. */
  runningImage(): Promise<string>;
  /** `lmsctl <args>` of `image` against the stack's database (stdout). */
  lmsctl(image: string, args: string[], input?: string): Promise<string>;
  /** API, then worker and scheduler, to `image`; RolloutFailed when a new one does not come up. */
  rollout(image: string): Promise<void>;
  /** Everything that runs another image back to `previous`. */
  rollBack(previous: string): Promise<void>;
  /** During the watch window: RolloutFailed when a new container or task failed. */
  checkHealth(): Promise<void>;
  /** After the deploy, whatever its outcome. */
  release(): Promise<void>;
}

const notRunning = (project: string, env: string, envFile: string | undefined, swarm: boolean) =>
  new CliError(
    ExitCode.failed,
    `${project} is not running (no caddy or api ${swarm ? 'service' : 'container'})`,
    `start it first: lmsctl up --env ${env}${envFile ? ` --env-file ${envFile}` : ''}${swarm ? ' --orchestrator swarm' : ''} --wait`,
  );

/** One host: lmsctl starts, routes, drains and removes the containers one at a time (rolling.ts). */
export function composeDriver(stack: RollingStack): DeployDriver {
  let routing: CaddyRouting | null = null;
  const routingOf = async () => {
    if (routing) return routing;
    const [caddy] = await runningContainers(stack, 'caddy');
    if (!caddy) throw notRunning(stack.target.project, stack.target.env, stack.target.envFile, false);
    routing = caddyRouting(caddy.name, stack.compose.env);
    return routing;
  };
  return {
    orchestrator: 'compose',
    async runningImage() {
      const [caddy] = await runningContainers(stack, 'caddy');
      const [api] = await runningContainers(stack, 'api');
      if (!caddy || !api) throw notRunning(stack.target.project, stack.target.env, stack.target.envFile, false);
      return api.image;
    },
    lmsctl: (image, args, input) => lmsctlInStack(stack, image, args, input),
    async rollout(image) {
      const route = await routingOf();
      const retiring = await runningContainers(stack, 'api');
      await route.routeTo(retiring.map((container) => container.name));
      await replaceApiContainers(stack, route, image, retiring);
      stack.say('worker and scheduler: replaced with a graceful stop');
      await replaceBackgroundServices(stack, image);
      await route.restore();
    },
    async rollBack(previous) {
      const route = await routingOf();
      const replaced = (await runningContainers(stack, 'api')).filter((container) => container.image !== previous);
      await route.routeTo((await runningContainers(stack, 'api')).map((container) => container.name));
      await replaceApiContainers(stack, route, previous, replaced);
      const background: StackContainer[] = [
        ...(await runningContainers(stack, 'worker')),
        ...(await runningContainers(stack, 'scheduler')),
      ];
      if (background.some((container) => container.image !== previous)) {
        await replaceBackgroundServices(stack, previous);
      }
      await route.restore();
    },
    async checkHealth() {
      const api = await runningContainers(stack, 'api');
      if (api.length === 0) throw new RolloutFailed('no API container runs any more', 'api');
      for (const container of api) {
        const details = await stack.docker.getContainer(container.name).inspect();
        if (details.State.Health?.Status === 'unhealthy') {
          throw new RolloutFailed(`${container.name} turned unhealthy during the watch window`, container.name);
        }
      }
    },
    async release() {
      await routing?.restore();
    },
  };
}

/** Runs lmsctl of `image` inside the stack (the scheduler's service: database, backups volume). */
async function lmsctlInStack(stack: RollingStack, image: string, args: string[], input?: string): Promise<string> {
  try {
    return await runCompose(
      composeWithImage(stack.compose, image),
      stack.target,
      ['run', '-T', '--rm', '--no-deps', 'scheduler', 'lmsctl', ...args],
      { cwd: stack.cwd, stdout: 'capture', stderr: 'capture', ...(input === undefined ? {} : { input }) },
    );
  } catch (error) {
    if (!(error instanceof ComposeFailed)) throw error;
    const said = error.output
      .split('\n')
      .filter((line) => /^(error|hint|warning):/.test(line.trim()))
      .join(' ');
    throw new CliError(ExitCode.failed, `lmsctl ${args.join(' ')} (${image}) refused: ${said || error.message}`);
  }
}

/** The LMS services in the order a deploy replaces them. */
const APP_ORDER = ['api', 'worker', 'scheduler'];

/**
 * A Swarm stack: `docker service update --image` per service, Swarm rolling the tasks (start-first,
 * rolled back by Swarm when a new task fails), lmsctl following each update within the ready
 * timeout; one-off containers for lmsctl's own steps.
 */
export function swarmDriver(
  swarm: SwarmTarget,
  stack: SwarmStack,
  options: { readyTimeoutMs: number; say(message: string): void },
): DeployDriver {
  let rolledOutAt = Date.now();
  const appServices = async (): Promise<SwarmService[]> =>
    (await stackServices(swarm.docker, swarm.target.project))
      .filter((service) => APP_ORDER.includes(service.service))
      .sort((a, b) => APP_ORDER.indexOf(a.service) - APP_ORDER.indexOf(b.service));
  return {
    orchestrator: 'swarm',
    async runningImage() {
      const services = await stackServices(swarm.docker, swarm.target.project);
      const api = services.find((service) => service.service === 'api');
      if (!api || !services.some((service) => service.service === 'caddy')) {
        throw notRunning(swarm.target.project, swarm.target.env, swarm.target.envFile, true);
      }
      return api.image;
    },
    lmsctl: (image, args, input) => runLmsctl(swarm, stack, image, args, input),
    async rollout(image) {
      for (const service of await appServices()) {
        if (service.image === image) continue;
        options.say(
          `${service.service}: docker service update --image ${image} (Swarm replaces its ${service.replicas} task(s) one at a time)`,
        );
        const failed = await updateServiceImage(swarm, service, image, options.readyTimeoutMs);
        if (failed) throw new RolloutFailed(failed, service.name);
      }
      rolledOutAt = Date.now();
    },
    async rollBack(previous) {
      for (const service of await appServices()) {
        if (service.image === previous) continue;
        // Back to the spec before this deploy when that is what Swarm kept (`service rollback`), else by image.
        if (service.previousImage === previous && service.updateState === 'completed') {
          options.say(`${service.service}: docker service rollback`);
          await rollbackService(swarm, service, options.readyTimeoutMs);
          const [now] = (await appServices()).filter((candidate) => candidate.name === service.name);
          if (now?.image !== previous)
            throw new Error(`${service.name} still runs ${now?.image ?? 'nothing'} after its rollback`);
        } else {
          options.say(`${service.service}: docker service update --image ${previous}`);
          const failed = await updateServiceImage(swarm, service, previous, options.readyTimeoutMs);
          if (failed) throw new Error(failed);
        }
      }
    },
    async checkHealth() {
      for (const service of await appServices()) {
        const failed = await failedTasksSince(swarm, service, rolledOutAt);
        if (failed.length) {
          throw new RolloutFailed(
            `a ${service.service} task failed during the watch window: ${failed[0]}`,
            service.name,
          );
        }
        if (service.running === 0) throw new RolloutFailed(`no ${service.service} task runs any more`, service.name);
      }
    },
    async release() {},
  };
}
