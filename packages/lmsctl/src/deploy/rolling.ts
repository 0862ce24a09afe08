import { execa } from 'execa';
import type Docker from 'dockerode';
import { formatDuration } from '@lms/core/duration';
import { CliError, ExitCode } from '../errors.js';
import { runCompose, type Compose, type StackTarget } from '../lib/compose/compose-cli.js';
import { logTail } from '../lib/compose/docker-engine.js';
import type { CaddyRouting } from './caddy-routing.js';

/** A running container of the stack. */
export interface StackContainer {
  name: string;
  image: string;
}

/** What the rolling steps work on: the stack, its engine, and how to say what happens. */
export interface RollingStack {
  compose: Compose;
  target: StackTarget;
  docker: Docker;
  cwd: string;
  say(message: string): void;
  /** How long a new container may take to answer /ready. */
  readyTimeoutMs: number;
  /** How long a stopping API container gets to finish its requests (SIGKILL after). */
  stopTimeoutSeconds: number;
}

/** A deploy step that failed in a way a rollback answers; `container` names the culprit. */
export class RolloutFailed extends Error {
  constructor(
    message: string,
    readonly container: string,
  ) {
    super(message);
  }
}

export async function runningContainers(stack: RollingStack, service: string): Promise<StackContainer[]> {
  const containers = await stack.docker.listContainers({
    filters: {
      label: [`com.docker.compose.project=${stack.target.project}`, `com.docker.compose.service=${service}`],
      status: ['running'],
    },
  });
  return containers
    .map((container) => ({ name: container.Names[0]!.replace(/^\//, ''), image: container.Image }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** Compose with LMS_IMAGE set: the services it creates run this image. */
export function composeWithImage(compose: Compose, image: string): Compose {
  return { ...compose, env: { ...compose.env, LMS_IMAGE: image } };
}

/**
 * Replaces API containers one at a time: a new container on `image` starts beside them, joins
 * Caddy's upstreams once its /ready answers, then one old container leaves the upstreams, is
 * stopped (SIGTERM: requests in flight finish) and removed. A new container that does not become
 * ready is removed before Caddy ever routes to it, and the rollout stops with RolloutFailed.
 * Returns the API containers routed to at the end.
 */
export async function replaceApiContainers(
  stack: RollingStack,
  routing: CaddyRouting,
  image: string,
  retiring: StackContainer[],
): Promise<StackContainer[]> {
  let serving = await runningContainers(stack, 'api');
  for (const old of retiring) {
    const before = new Set(serving.map((container) => container.name));
    await runCompose(
      composeWithImage(stack.compose, image),
      stack.target,
      ['up', '-d', '--no-deps', '--no-recreate', '--no-build', '--scale', `api=${serving.length + 1}`, 'api'],
      { cwd: stack.cwd, stdout: 'capture', stderr: 'capture' },
    );
    const fresh = (await runningContainers(stack, 'api')).find((container) => !before.has(container.name));
    if (!fresh) throw new CliError(ExitCode.failed, `Compose started no new api container on ${image}`);
    stack.say(`api: ${fresh.name} started on ${image}; waiting for /ready`);
    try {
      await waitUntilReady(stack, fresh.name, 'http://127.0.0.1:8000/ready');
    } catch (error) {
      await removeContainer(stack, fresh.name, 0);
      throw error;
    }
    serving = [...serving.filter((container) => container.name !== old.name), fresh];
    await routing.routeTo(serving.map((container) => container.name));
    stack.say(`api: ${fresh.name} serves; ${old.name} left the upstreams and is draining`);
    await removeContainer(stack, old.name, stack.stopTimeoutSeconds);
  }
  return serving;
}

/**
 * Recreates the worker and the scheduler on `image` (Compose stops each old one with its grace
 * period: running jobs finish, and a job cut short is picked up again when its lock expires),
 * then waits for them to be healthy.
 */
export async function replaceBackgroundServices(stack: RollingStack, image: string): Promise<void> {
  const services = ['worker', 'scheduler'];
  await runCompose(
    composeWithImage(stack.compose, image),
    stack.target,
    ['up', '-d', '--no-deps', '--no-build', ...services],
    { cwd: stack.cwd, stdout: 'capture', stderr: 'capture' },
  );
  for (const service of services) {
    for (const container of await runningContainers(stack, service)) {
      if (container.image !== image) {
        throw new RolloutFailed(`${container.name} still runs ${container.image}, not ${image}`, container.name);
      }
      await waitUntilHealthy(stack, container.name);
    }
  }
}

/** Polls `lms-healthcheck URL` inside the container until it passes, the container dies, or the timeout. */
export async function waitUntilReady(stack: RollingStack, container: string, url: string): Promise<void> {
  const deadline = Date.now() + stack.readyTimeoutMs;
  let reason = 'no answer yet';
  for (;;) {
    const state = await containerState(stack, container);
    if (state.dead) await failWithLogs(stack, container, `${container} ${state.dead}`);
    const probe = await execa('docker', ['exec', container, 'lms-healthcheck', url], {
      env: stack.compose.env,
      reject: false,
      stdin: 'ignore',
    });
    if (probe.exitCode === 0) return;
    reason = (probe.stderr || probe.stdout).trim() || reason;
    if (Date.now() > deadline) {
      await failWithLogs(
        stack,
        container,
        `${container} was not ready within ${formatDuration(stack.readyTimeoutMs)}: ${reason}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function waitUntilHealthy(stack: RollingStack, container: string): Promise<void> {
  const deadline = Date.now() + stack.readyTimeoutMs;
  for (;;) {
    const state = await containerState(stack, container);
    if (state.dead) await failWithLogs(stack, container, `${container} ${state.dead}`);
    if (state.health === 'healthy' || state.health === null) return;
    if (state.health === 'unhealthy') await failWithLogs(stack, container, `${container} is unhealthy`);
    if (Date.now() > deadline) {
      await failWithLogs(
        stack,
        container,
        `${container} was not healthy within ${formatDuration(stack.readyTimeoutMs)} (${state.health})`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function containerState(
  stack: RollingStack,
  container: string,
): Promise<{ dead: string | null; health: string | null }> {
  const details = await stack.docker.getContainer(container).inspect();
  const status = details.State.Status;
  const dead =
    status === 'exited' || status === 'dead'
      ? `exited (exit code ${details.State.ExitCode})`
      : details.State.Restarting
        ? 'keeps restarting'
        : null;
  return { dead, health: details.State.Health?.Status ?? null };
}

async function failWithLogs(stack: RollingStack, container: string, message: string): Promise<never> {
  const lines = await logTail(stack.docker, container, 5).catch(() => []);
  throw new RolloutFailed(lines.length ? `${message}; its last log lines: ${lines.join(' | ')}` : message, container);
}

/** Stops (SIGTERM, then SIGKILL after the timeout) and removes a container. */
export async function removeContainer(
  stack: RollingStack,
  container: string,
  stopTimeoutSeconds: number,
): Promise<void> {
  const handle = stack.docker.getContainer(container);
  await handle.stop({ t: stopTimeoutSeconds }).catch((error: { statusCode?: number }) => {
    // 304: already stopped.
    if (error.statusCode !== 304) throw error;
  });
  await handle.remove({ v: true });
}
