import { execa } from 'execa';
import { access, constants, realpath } from 'node:fs/promises';
import path from 'node:path';
import type Docker from 'dockerode';
import { CliError, ExitCode } from '../../errors.js';

/** What a service of the resolved Compose configuration runs, and how its image is built. */
export interface ServiceImage {
  service: string;
  image: string;
  build?: { context: string; dockerfile: string; target?: string; args: Record<string, string> };
}

interface ComposeService {
  image?: string;
  ports?: Array<string | { published?: string | number; host_ip?: string; protocol?: string }>;
  build?:
    string | { context?: string; dockerfile?: string; target?: string; args?: Record<string, unknown> | string[] };
  depends_on?: string[] | Record<string, unknown>;
  profiles?: string[];
}

function servicesOf(config: unknown): Record<string, ComposeService> {
  const services = (config as { services?: unknown } | null)?.services;
  return typeof services === 'object' && services !== null ? (services as Record<string, ComposeService>) : {};
}

/**
 * The services `up [services…]` starts: the named ones and everything they depend on, or, when
 * none is named, all of them but those of a profile COMPOSE_PROFILES does not activate (Compose
 * v1's `config` lists those too, and their images must not be pulled for nothing).
 */
export function servicesToStart(config: unknown, named: string[], activeProfiles: string[] = []): string[] {
  const services = servicesOf(config);
  if (named.length === 0) {
    return Object.keys(services).filter((name) => {
      const profiles = services[name]?.profiles;
      return !Array.isArray(profiles) || profiles.some((profile) => activeProfiles.includes(profile));
    });
  }
  const unknown = named.filter((name) => !(name in services));
  if (unknown.length) {
    throw new CliError(
      ExitCode.usage,
      `no service ${unknown.join(', ')} in this stack`,
      `its services: ${Object.keys(services).join(', ')}`,
    );
  }
  const wanted = new Set<string>();
  const visit = (name: string) => {
    if (wanted.has(name)) return;
    wanted.add(name);
    const dependsOn = services[name]?.depends_on ?? [];
    for (const dependency of Array.isArray(dependsOn) ? dependsOn : Object.keys(dependsOn)) visit(dependency);
  };
  named.forEach(visit);
  return [...wanted];
}

/** The image of each named service, with its build section when Compose would build it. */
export function serviceImages(config: unknown, names: string[]): ServiceImage[] {
  const services = servicesOf(config);
  return names.flatMap((service): ServiceImage[] => {
    const definition = services[service];
    if (!definition?.image) return [];
    const build = typeof definition.build === 'string' ? { context: definition.build } : definition.build;
    if (!build) return [{ service, image: definition.image }];
    const context = build.context ?? '.';
    return [
      {
        service,
        image: definition.image,
        build: {
          context,
          dockerfile: path.resolve(context, build.dockerfile ?? 'Dockerfile'),
          ...(build.target ? { target: build.target } : {}),
          args: buildArgs(build.args),
        },
      },
    ];
  });
}

function buildArgs(args: Record<string, unknown> | string[] | undefined): Record<string, string> {
  if (!args) return {};
  if (Array.isArray(args)) {
    return Object.fromEntries(
      args.map((pair) => {
        const at = pair.indexOf('=');
        return at < 0 ? [pair, ''] : [pair.slice(0, at), pair.slice(at + 1)];
      }),
    );
  }
  // Compose prints scalar values; anything else would be a file it did not resolve.
  return Object.fromEntries(
    Object.entries(args).map(([name, value]) => [
      name,
      typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? String(value) : '',
    ]),
  );
}

export async function imageExists(docker: Docker, image: string): Promise<boolean> {
  try {
    await docker.getImage(image).inspect();
    return true;
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return false;
    throw error;
  }
}

/** A Docker CLI that builds with BuildKit, and how to call it. */
export interface BuildKitCli {
  argv: string[];
  env: NodeJS.ProcessEnv;
}

/**
 * The Dockerfile needs BuildKit (RUN --mount, COPY --chmod). A Docker CLI builds with it when it
 * has the buildx plugin, or when it is older than 23.0 (BuildKit built in, DOCKER_BUILDKIT=1);
 * a 23+ CLI without buildx cannot. Every `docker` on PATH is tried in order, as machines with a
 * newer CLI in /usr/local/bin over the distribution's own exist.
 */
export async function findBuildKitCli(env: NodeJS.ProcessEnv): Promise<BuildKitCli> {
  const tried: string[] = [];
  for (const cli of await dockerClisOnPath(env.PATH ?? '')) {
    const buildx = await execa(cli, ['buildx', 'version'], { env, reject: false });
    if (buildx.exitCode === 0) return { argv: [cli, 'buildx', 'build', '--load'], env };
    const version = await execa(cli, ['version', '--format', '{{.Client.Version}}'], { env, reject: false });
    const major = Number.parseInt(String(version.stdout).trim(), 10);
    if (Number.isInteger(major) && major < 23) return { argv: [cli, 'build'], env: { ...env, DOCKER_BUILDKIT: '1' } };
    tried.push(`${cli} (${String(version.stdout).trim() || 'unknown version'}, no buildx)`);
  }
  throw new CliError(
    ExitCode.failed,
    tried.length
      ? `no Docker CLI here builds with BuildKit, which the Dockerfile needs: ${tried.join('; ')}`
      : 'no `docker` command on PATH to build the images with',
    'install the Docker buildx plugin (docker-buildx-plugin), or build the images elsewhere and load them (docker load)',
  );
}

async function dockerClisOnPath(searchPath: string): Promise<string[]> {
  const found: string[] = [];
  const seen = new Set<string>();
  for (const dir of searchPath.split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, 'docker');
    try {
      await access(candidate, constants.X_OK);
      const real = await realpath(candidate);
      if (seen.has(real)) continue;
      seen.add(real);
      found.push(candidate);
    } catch {
      // not here
    }
  }
  return found;
}

/** `docker build` of one service's image as Compose would build it, output on `stdio`. */
export async function buildImage(
  cli: BuildKitCli,
  image: ServiceImage & { build: NonNullable<ServiceImage['build']> },
  options: { cwd: string; stdout: 'inherit' | 2 },
): Promise<void> {
  const { build } = image;
  const argv = [
    ...cli.argv.slice(1),
    '-f',
    build.dockerfile,
    ...(build.target ? ['--target', build.target] : []),
    ...Object.entries(build.args).flatMap(([name, value]) => ['--build-arg', `${name}=${value}`]),
    '-t',
    image.image,
    build.context,
  ];
  const result = await execa(cli.argv[0]!, argv, {
    env: cli.env,
    cwd: options.cwd,
    reject: false,
    stdin: 'ignore',
    stdout: options.stdout,
    stderr: 'inherit',
  });
  if (result.exitCode !== 0) {
    throw new CliError(
      ExitCode.failed,
      `building ${image.image} (service ${image.service}) failed (exit code ${result.exitCode ?? result.signal})`,
      'the build output above says why',
    );
  }
}

/** A TCP port a service publishes on the host. */
export interface PublishedPort {
  service: string;
  host: string;
  port: number;
}

/** The host TCP ports the named services publish (`ip:published:target[/proto]` or the long form). */
export function publishedPorts(config: unknown, names: string[]): PublishedPort[] {
  const services = servicesOf(config);
  return names.flatMap((service) =>
    (services[service]?.ports ?? []).flatMap((entry): PublishedPort[] => {
      if (typeof entry === 'string') {
        const [address = '', protocol = 'tcp'] = entry.split('/');
        const parts = address.split(':');
        if (protocol !== 'tcp' || parts.length < 2) return [];
        const port = Number(parts.at(-2));
        const host = parts.length >= 3 ? parts.slice(0, -2).join(':') : '0.0.0.0';
        return Number.isInteger(port) && port > 0 ? [{ service, host: host || '0.0.0.0', port }] : [];
      }
      const port = Number(entry.published);
      if ((entry.protocol ?? 'tcp') !== 'tcp' || !Number.isInteger(port) || port <= 0) return [];
      return [{ service, host: entry.host_ip || '0.0.0.0', port }];
    }),
  );
}
