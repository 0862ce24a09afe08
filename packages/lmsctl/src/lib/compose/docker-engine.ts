import { once } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import type Docker from 'dockerode';

/**
 * The Docker Engine API, through dockerode: container state and health of a Compose project
 * (`docker compose ps` says less and differs between Compose versions), and log tails.
 */
export interface ServiceState {
  service: string;
  container: string;
  state: string;
  /** healthy, unhealthy, starting, or null when the service has no healthcheck. */
  health: string | null;
  status: string;
  exitCode: number | null;
  ports: string[];
}

export async function connectEngine(env: NodeJS.ProcessEnv): Promise<Docker | null> {
  const { default: DockerClient } = await import('dockerode');
  const host = env.DOCKER_HOST;
  const docker = host?.startsWith('unix://')
    ? new DockerClient({ socketPath: host.slice('unix://'.length) })
    : new DockerClient();
  try {
    await docker.ping();
    return docker;
  } catch {
    return null;
  }
}

export async function projectServices(docker: Docker, project: string): Promise<ServiceState[]> {
  const containers = await docker.listContainers({
    all: true,
    filters: { label: [`com.docker.compose.project=${project}`] },
  });
  const states: ServiceState[] = [];
  for (const summary of containers) {
    const details = await docker.getContainer(summary.Id).inspect();
    states.push({
      service:
        summary.Labels['com.docker.compose.service'] ?? summary.Names[0]?.replace(/^\//, '') ?? summary.Id.slice(0, 12),
      container: summary.Names[0]?.replace(/^\//, '') ?? summary.Id.slice(0, 12),
      state: details.State.Status,
      health: details.State.Health?.Status ?? null,
      status: summary.Status,
      exitCode: details.State.Status === 'exited' ? details.State.ExitCode : null,
      ports: (summary.Ports ?? [])
        .filter((port) => port.PublicPort)
        .map((port) => `${port.IP ?? ''}:${port.PublicPort}->${port.PrivatePort}/${port.Type}`),
    });
  }
  return states.sort((a, b) => a.service.localeCompare(b.service));
}

/** The last `lines` log lines of a container (stdout and stderr, demultiplexed). */
export async function logTail(docker: Docker, container: string, lines = 20): Promise<string[]> {
  const raw = await docker.getContainer(container).logs({ stdout: true, stderr: true, tail: lines, follow: false });
  const out = new PassThrough();
  let text = '';
  out.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  // Without a TTY the Engine multiplexes stdout and stderr in 8-byte-headed frames.
  const source = Readable.from([Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw))]);
  docker.modem.demuxStream(source, out, out);
  await once(source, 'end');
  await new Promise((resolve) => setImmediate(resolve));
  return text.split('\n').filter(Boolean).slice(-lines);
}
