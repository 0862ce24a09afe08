import type Docker from 'dockerode';
import type { CommandContext } from '../../context.js';
import { CliError, ExitCode } from '../../errors.js';
import { runCompose, type Compose, type ComposeOutput, type StackEnv, type StackTarget } from './compose-cli.js';
import { connectEngine, type ServiceState } from './docker-engine.js';
import { buildImage, findBuildKitCli, imageExists, type ServiceImage } from './stack-images.js';

/**
 * What `lmsctl up` does before starting a stack, on Compose and on Swarm alike: an engine that
 * answers, the images pulled or built, and the result it reports.
 */

export interface UpResult {
  env: StackEnv;
  project: string;
  /** Images built before starting (with --build, or because they did not exist yet). */
  built: string[];
  services: ServiceState[];
  waitedMs: number | null;
}

/** Compose's own progress and messages: on the terminal, or on stderr with --json (stdout is the result). */
export function composeOutput(ctx: CommandContext): ComposeOutput {
  return ctx.json ? 'stderr' : 'inherit';
}

export async function requireEngine(ctx: CommandContext): Promise<Docker> {
  const docker = await connectEngine(ctx.env);
  if (!docker) {
    throw new CliError(
      ExitCode.failed,
      'no Docker engine answers (DOCKER_HOST or /var/run/docker.sock)',
      'start Docker, or run the dev stack as local processes: lmsctl up --native',
    );
  }
  return docker;
}

/** Images that neither exist here nor are built by the stack are pulled first, so a missing one fails before anything is created. */
export async function pullMissing(
  ctx: CommandContext,
  docker: Docker,
  compose: Compose,
  target: StackTarget,
  images: ServiceImage[],
): Promise<void> {
  const missing: ServiceImage[] = [];
  for (const image of images) if (!image.build && !(await imageExists(docker, image.image))) missing.push(image);
  if (missing.length === 0) return;
  try {
    await runCompose(compose, target, ['pull', ...missing.map((image) => image.service)], {
      cwd: ctx.cwd,
      stdout: composeOutput(ctx),
    });
  } catch {
    throw new CliError(
      ExitCode.failed,
      `cannot pull ${missing.map((image) => `${image.image} (${image.service})`).join(', ')}; nothing was started`,
      target.env === 'dev'
        ? 'without a registry, run the dev stack as local processes: lmsctl up --native'
        : 'check the registry is reachable and the image names (the *_IMAGE variables), or load the images with docker load',
    );
  }
}

/** Builds each image the stack builds once (with --build, or when it does not exist yet). */
export async function buildImages(
  ctx: CommandContext,
  docker: Docker,
  images: ServiceImage[],
  rebuild: boolean,
): Promise<string[]> {
  const toBuild = new Map<string, ServiceImage & { build: NonNullable<ServiceImage['build']> }>();
  for (const image of images) {
    if (!image.build || toBuild.has(image.image)) continue;
    if (rebuild || !(await imageExists(docker, image.image)))
      toBuild.set(image.image, { ...image, build: image.build });
  }
  if (toBuild.size === 0) return [];
  const cli = await findBuildKitCli(ctx.env);
  for (const image of toBuild.values()) {
    ctx.out.info(`building ${image.image}`);
    await buildImage(cli, image, { cwd: ctx.cwd, stdout: ctx.json ? 2 : 'inherit' });
  }
  return [...toBuild.keys()];
}
