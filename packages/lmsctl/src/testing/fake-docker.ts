import http from 'node:http';
import { chmod, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/**
 * Fakes of Docker at its boundaries: a `docker` (and `docker-compose`) executable on PATH that
 * records its argv, and an Engine API on a unix socket that dockerode talks to.
 */
export interface FakeDocker {
  dir: string;
  /** PATH with the fakes first. */
  path: string;
  /** Every argv the fakes were called with, in order. */
  calls(): Promise<string[][]>;
  close(): Promise<void>;
}

/** What the fake prints for `compose config` unless told otherwise: services whose images exist (the fake engine has every image). */
const FAKE_CONFIG = `services:
  api: { image: 'lms:latest' }
  worker: { image: 'lms:latest' }
  caddy: { image: 'lms-caddy:latest' }
  migrate: { image: 'lms:latest' }
`;

export async function fakeDockerCli(options: {
  plugin: boolean;
  exitCode?: number;
  /** What every call but `version` prints on stdout, as a real compose prints its YAML or logs. */
  stdout?: string;
  /** What `compose config` prints (default FAKE_CONFIG; `stdout`, when given, instead). */
  config?: string;
  /** The compose subcommand (`pull`, `up`) that exits 1; every other call succeeds. */
  failing?: string;
  /** Whether `docker buildx version` answers (default yes), and the client version `docker version` reports. */
  buildx?: boolean;
  clientVersion?: string;
  /** PATH holds only the fakes (and node), so no real docker CLI of the machine is found after them. */
  isolated?: boolean;
}): Promise<FakeDocker> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lms-fake-docker-'));
  const log = path.join(dir, 'calls.log');
  // CommonJS: the folder has no package.json saying otherwise.
  const script = (name: string) => `#!/usr/bin/env node
const fs = require('fs');
const args = process.argv.slice(2);
fs.appendFileSync(${JSON.stringify(log)}, JSON.stringify([${JSON.stringify(name)}, ...args]) + '\\n');
if (${JSON.stringify(name)} === 'docker' && args[0] === 'compose' && args[1] === 'version') process.exit(${options.plugin ? 0 : 1});
if (args[0] === 'buildx' && args[1] === 'version') process.exit(${options.buildx === false ? 1 : 0});
if (args[0] === 'version' && args.includes('--format')) { process.stdout.write(${JSON.stringify(`${options.clientVersion ?? '28.2.2'}
`)}); process.exit(0); }
if (args[0] === 'version' || args[1] === 'version') process.exit(0);
if (args.includes('config') && ${JSON.stringify(options.stdout === undefined)}) process.stdout.write(${JSON.stringify(options.config ?? FAKE_CONFIG)});
else process.stdout.write(${JSON.stringify(options.stdout ?? '')});
process.exitCode = ${options.failing ? `args.includes(${JSON.stringify(options.failing)}) ? 1 : 0` : (options.exitCode ?? 0)};
`;
  for (const name of ['docker', 'docker-compose']) {
    await writeFile(path.join(dir, name), script(name));
    await chmod(path.join(dir, name), 0o755);
  }
  if (options.isolated) await symlink(process.execPath, path.join(dir, 'node'));
  return {
    dir,
    path: options.isolated ? dir : `${dir}:${process.env.PATH}`,
    async calls() {
      const text = await readFile(log, 'utf8').catch(() => '');
      return text
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as string[])
        .filter((argv) => !argv.includes('version'));
    },
    close: () => rm(dir, { recursive: true, force: true }),
  };
}

export interface FakeContainer {
  id: string;
  service: string;
  /** Health per inspect call, the last repeating (null: no healthcheck). */
  health: Array<string | null>;
  state?: string;
  exitCode?: number;
  logs?: string[];
}

/** A fake Engine API for one Compose project on a unix socket (with or without a /v1.xx prefix). */
export async function fakeEngine(
  project: string,
  containers: FakeContainer[],
  volumes: string[] = [],
  /** Images the engine does not have (every other one exists). */
  missingImages: string[] = [],
) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lms-fake-engine-'));
  const socket = path.join(dir, 'docker.sock');
  const inspections = new Map<string, number>();
  const requests: string[] = [];
  // The Engine finds a container by id or by name, and so does the fake.
  const byIdOrName = (reference: string | undefined) =>
    containers.find((candidate) => candidate.id === reference || `${project}-${candidate.service}-1` === reference);
  const frame = (text: string) => {
    const payload = Buffer.from(`${text}\n`);
    const header = Buffer.alloc(8);
    header[0] = 1;
    header.writeUInt32BE(payload.length, 4);
    return Buffer.concat([header, payload]);
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://engine');
    const route = url.pathname.replace(/^\/v1\.\d+/, '');
    requests.push(`${req.method} ${route}`);
    const json = (body: unknown) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (route === '/_ping') return void res.writeHead(200).end('OK');
    if (route === '/containers/json') {
      const filters = JSON.parse(url.searchParams.get('filters') ?? '{}') as { label?: string[] };
      if (!filters.label?.includes(`com.docker.compose.project=${project}`)) return json([]);
      return json(
        containers.map((container) => ({
          Id: container.id,
          Names: [`/${project}-${container.service}-1`],
          Labels: { 'com.docker.compose.project': project, 'com.docker.compose.service': container.service },
          Status: 'Up',
          Ports:
            container.service === 'caddy' ? [{ IP: '0.0.0.0', PrivatePort: 443, PublicPort: 443, Type: 'tcp' }] : [],
        })),
      );
    }
    const inspect = /^\/containers\/([^/]+)\/json$/.exec(route);
    if (inspect) {
      const container = byIdOrName(inspect[1]);
      if (!container)
        return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"message":"No such container"}');
      const count = inspections.get(container.id) ?? 0;
      inspections.set(container.id, count + 1);
      const health = container.health[Math.min(count, container.health.length - 1)] ?? null;
      return json({
        Id: container.id,
        State: {
          Status: container.state ?? 'running',
          ExitCode: container.exitCode ?? 0,
          ...(health ? { Health: { Status: health } } : {}),
        },
      });
    }
    const logs = /^\/containers\/([^/]+)\/logs$/.exec(route);
    if (logs) {
      const container = byIdOrName(logs[1]);
      res.writeHead(200, { 'content-type': 'application/vnd.docker.raw-stream' });
      return void res.end(Buffer.concat((container?.logs ?? []).map(frame)));
    }
    if (route === '/volumes') return json({ Volumes: volumes.map((name) => ({ Name: name })), Warnings: [] });
    if (route === '/networks') return json([]);
    // Every image but the missing ones exists.
    const image = /^\/images\/(.+)\/json$/.exec(route);
    if (image) {
      if (missingImages.includes(decodeURIComponent(image[1]!)))
        return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"message":"No such image"}');
      return json({ Id: 'sha256:fake' });
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return {
    dockerHost: `unix://${socket}`,
    requests,
    async close() {
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
