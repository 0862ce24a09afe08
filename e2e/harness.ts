import http2 from 'node:http2';
import https from 'node:https';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
// Relative, not @lms/core/testing: the global setup loads this without the lms-source condition.
import { freePort } from '../packages/core/src/testing/free-port.js';
import { repoRoot, runLmsctl, type CliRun } from '../packages/lmsctl/src/testing/run-cli.js';

export { freePort, repoRoot };

/** Every Compose project of these tests starts with this, followed by the creating process id. */
export const PROJECT_PREFIX = 'lmse2e';

/** A project name of this test's own: unique, and traceable to the process that made it. */
export function projectName(kind: string): string {
  return `${PROJECT_PREFIX}-${process.pid}-${kind}-${randomBytes(3).toString('hex')}`;
}

/**
 * What the stacks need from the machine: the registry's images, or the stand-ins' variables
 * (NODE_IMAGE, POSTGRES_IMAGE, …) that `.ci/run` exports where no registry answers; and the
 * Docker client configuration.
 */
const PASSED_THROUGH = [
  'DOCKER_HOST',
  'DOCKER_CONFIG',
  'NODE_IMAGE',
  'PG_MAJOR',
  'CADDY_BASE_IMAGE',
  'POSTGRES_IMAGE',
  'REDIS_IMAGE',
  'MAILPIT_IMAGE',
  'PROMETHEUS_IMAGE',
  'ALERTMANAGER_IMAGE',
  'NODE_EXPORTER_IMAGE',
  'POSTGRES_EXPORTER_IMAGE',
  'REDIS_EXPORTER_IMAGE',
];

export function machineEnv(): Record<string, string> {
  return Object.fromEntries(
    PASSED_THROUGH.flatMap((name) => {
      const value = process.env[name];
      return value ? [[name, value]] : [];
    }),
  );
}

/** lmsctl from the sources, in the repository, with only the machine's and the test's variables. */
export function lmsctl(args: string[], env: Record<string, string>, input?: string): Promise<CliRun> {
  return runLmsctl(args, { env: { ...machineEnv(), ...env }, cwd: repoRoot, ...(input ? { input } : {}) });
}

/** The Docker CLI (any version: only engine calls, never a build). */
export async function docker(args: string[], options: { input?: string; reject?: boolean } = {}) {
  const result = await execa('docker', args, {
    reject: false,
    ...(options.input !== undefined ? { input: options.input } : { stdin: 'ignore' }),
  });
  if (options.reject !== false && result.exitCode !== 0) {
    throw new Error(`docker ${args.join(' ')} failed (${result.exitCode}): ${result.stderr}`);
  }
  return result;
}

export interface ProjectLeftovers {
  containers: string[];
  volumes: string[];
  networks: string[];
  /** Docker secrets and configs of a Swarm stack. */
  secrets?: string[];
}

/** The labels a project's objects carry: Compose's, or a Swarm stack's. */
const PROJECT_LABELS = (project: string) => [
  `label=com.docker.compose.project=${project}`,
  `label=com.docker.stack.namespace=${project}`,
];

async function names(args: string[]): Promise<string[]> {
  return (await docker(args, { reject: false })).stdout
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
}

/** Whatever of a Compose project or Swarm stack still exists on the engine. */
export async function leftovers(project: string): Promise<ProjectLeftovers> {
  const each = async (args: (label: string) => string[]) =>
    [...new Set((await Promise.all(PROJECT_LABELS(project).map((label) => names(args(label))))).flat())].sort();
  const secrets = await each((label) => ['secret', 'ls', '--filter', label, '--format', '{{.Name}}']);
  const configs = await each((label) => ['config', 'ls', '--filter', label, '--format', '{{.Name}}']);
  return {
    containers: await each((label) => ['ps', '-a', '--filter', label, '--format', '{{.Names}}']),
    volumes: await each((label) => ['volume', 'ls', '--filter', label, '--format', '{{.Name}}']),
    networks: await each((label) => ['network', 'ls', '--filter', label, '--format', '{{.Name}}']),
    ...(secrets.length || configs.length ? { secrets: [...secrets, ...configs] } : {}),
  };
}

/**
 * Removes a project's containers, volumes and networks (and a Swarm stack's services, secrets and
 * configs) with the engine alone (no Compose file needed), for `finally` blocks and for projects
 * left by killed runs.
 */
export async function removeProject(project: string): Promise<void> {
  const services = await names(['service', 'ls', '--filter', `label=com.docker.stack.namespace=${project}`, '-q']);
  if (services.length) {
    await docker(['service', 'rm', ...services], { reject: false });
    // A service's containers go away shortly after the service.
    for (let waited = 0; waited < 60 && (await leftovers(project)).containers.length; waited++) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  const left = await leftovers(project);
  if (left.containers.length) await docker(['rm', '-f', '-v', ...left.containers], { reject: false });
  if (left.volumes.length) await docker(['volume', 'rm', '-f', ...left.volumes], { reject: false });
  if (left.networks.length) await docker(['network', 'rm', ...left.networks], { reject: false });
  for (const name of left.secrets ?? []) {
    await docker(['secret', 'rm', name], { reject: false });
    await docker(['config', 'rm', name], { reject: false });
  }
}

/** Polls `check` until it returns a value (not undefined) or `timeoutMs` passes; then throws with the last reason. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  { timeoutMs = 120_000, intervalMs = 1000 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let reason = 'no answer';
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      reason = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s (${reason})`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * The containers of one service of a project (Compose v1 and v2 name them differently); of a Swarm
 * stack, the running tasks' containers (Swarm keeps those of ended tasks for a while).
 */
export async function containersOf(project: string, service: string): Promise<string[]> {
  const compose = await names([
    'ps',
    '-a',
    '--filter',
    `label=com.docker.compose.project=${project}`,
    '--filter',
    `label=com.docker.compose.service=${service}`,
    '--format',
    '{{.Names}}',
  ]);
  const swarm = await names([
    'ps',
    '--filter',
    `label=com.docker.swarm.service.name=${project}_${service}`,
    '--filter',
    'status=running',
    '--format',
    '{{.Names}}',
  ]);
  return [...compose, ...swarm].sort();
}

export async function containerOf(project: string, service: string): Promise<string> {
  const [container] = await containersOf(project, service);
  if (!container) throw new Error(`no container of ${service} in ${project}`);
  return container;
}

/** A request over HTTPS to Caddy on 127.0.0.1, with the site's name for SNI and Host, trusting only `ca`. */
export function httpsRequest(
  site: { host: string; port: number; ca: string; agent: https.Agent },
  method: string,
  urlPath: string,
  options: { json?: unknown; token?: string } = {},
): Promise<{ status: number; body: string }> {
  const body = options.json === undefined ? undefined : JSON.stringify(options.json);
  return new Promise((resolve, reject) => {
    const request = https.request(
      {
        host: '127.0.0.1',
        port: site.port,
        servername: site.host,
        ca: site.ca,
        agent: site.agent,
        method,
        path: urlPath,
        headers: {
          host: `${site.host}:${site.port}`,
          ...(body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}),
          ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
        },
        timeout: 30_000,
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
        response.on('error', reject);
      },
    );
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', reject);
    request.end(body);
  });
}

/**
 * An HTTP/2 client of Caddy, as browsers talk to it. A config reload (what a deploy does) ends
 * Caddy's connections gracefully with GOAWAY, which names the last request it took: the requests
 * after it were not processed, and a client sends them again on a new connection — browsers do,
 * and so does this one (once). Any other error is the request's failure.
 */
export class Http2Client {
  private session: http2.ClientHttp2Session | null = null;

  constructor(private readonly site: { host: string; port: number; ca: string }) {}

  private connect(): http2.ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    // The name resolves nowhere but here: connect to 127.0.0.1, present the site's name (SNI and
    // :authority on every request).
    const session = http2.connect(`https://127.0.0.1:${this.site.port}`, {
      ca: this.site.ca,
      servername: this.site.host,
    });
    session.on('error', () => undefined);
    session.on('goaway', () => {
      if (this.session === session) this.session = null;
    });
    session.on('close', () => {
      if (this.session === session) this.session = null;
    });
    this.session = session;
    return session;
  }

  async request(
    method: string,
    urlPath: string,
    options: { json?: unknown; token?: string } = {},
    retried = false,
  ): Promise<{ status: number; body: string }> {
    try {
      return await this.once(method, urlPath, options);
    } catch (error) {
      const code = (error as { code?: string }).code ?? '';
      const unprocessed =
        code === 'ERR_HTTP2_GOAWAY_SESSION' ||
        code === 'ERR_HTTP2_INVALID_SESSION' ||
        /REFUSED_STREAM/.test(String((error as Error).message));
      if (unprocessed && !retried) return this.request(method, urlPath, options, true);
      throw error;
    }
  }

  private once(method: string, urlPath: string, options: { json?: unknown; token?: string }) {
    const body = options.json === undefined ? undefined : JSON.stringify(options.json);
    return new Promise<{ status: number; body: string }>((resolve, reject) => {
      const stream = this.connect().request({
        ':method': method,
        ':path': urlPath,
        ':authority': `${this.site.host}:${this.site.port}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
        ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
      });
      let status = 0;
      let text = '';
      stream.setEncoding('utf8');
      stream.setTimeout(30_000, () => stream.close(http2.constants.NGHTTP2_CANCEL));
      stream.on('response', (headers) => (status = Number(headers[':status'])));
      stream.on('data', (chunk: string) => (text += chunk));
      stream.on('end', () => resolve({ status, body: text }));
      stream.on('error', reject);
      stream.on('close', () => {
        if (status === 0) {
          const error = new Error(`stream closed without an answer (code ${stream.rstCode})`) as Error & {
            code?: string;
          };
          if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) error.message += ' REFUSED_STREAM';
          reject(error);
        }
      });
      stream.end(body);
    });
  }

  close(): void {
    this.session?.close();
  }
}

/** An account made the way an operator makes one: lmsctl inside the stack, the password on stdin. */
export async function createUserInStack(
  project: string,
  user: { email: string; name: string; role: 'admin' | 'instructor' | 'student'; password: string },
): Promise<void> {
  const created = await docker(
    [
      'exec',
      '-i',
      await containerOf(project, 'scheduler'),
      'lmsctl',
      'user',
      'create',
      '--email',
      user.email,
      '--name',
      user.name,
      '--role',
      user.role,
      '--password-stdin',
    ],
    { input: user.password, reject: false },
  );
  if (created.exitCode !== 0) throw new Error(`lmsctl user create in ${project} failed: ${created.stderr}`);
}
