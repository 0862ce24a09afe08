import net from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeDir } from '../../lib/compose/compose-cli.js';
import { fakeDockerCli, fakeEngine } from '../../testing/fake-docker.js';
import { runLmsctl } from '../../testing/run-cli.js';

let work: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-stack-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const file = (name: string) => path.join(composeDir, name);

describe('the compose command lines', () => {
  it('pass the project, the files of each environment and the env file', async () => {
    const docker = await fakeDockerCli({ plugin: true });
    const engine = await fakeEngine('lms', []);
    try {
      const envFile = path.join(work, 'prod.env');
      await writeFile(envFile, 'SECRET_KEY=x\n');
      const env = { PATH: docker.path, DOCKER_HOST: engine.dockerHost };
      expect((await runLmsctl(['up'], { env, cwd: work })).exitCode).toBe(0);
      expect(
        (
          await runLmsctl(['up', '--env', 'prod', '--build', '--env-file', envFile, 'api', 'worker'], {
            env,
            cwd: work,
          })
        ).exitCode,
      ).toBe(0);
      expect((await runLmsctl(['up', '--env', 'staging'], { env, cwd: work })).exitCode).toBe(0);
      expect((await runLmsctl(['up', '--env', 'observability'], { env, cwd: work })).exitCode).toBe(0);
      expect(
        (await runLmsctl(['logs', 'api', '-f', '--tail', '10', '--env', 'prod'], { env, cwd: work })).exitCode,
      ).toBe(0);
      expect((await runLmsctl(['restart', 'worker'], { env, cwd: work })).exitCode).toBe(0);
      expect((await runLmsctl(['config', '--env', 'staging'], { env, cwd: work })).exitCode).toBe(0);
      expect((await runLmsctl(['down'], { env, cwd: work })).exitCode).toBe(0);
      const dev = ['docker', 'compose', '-p', 'lms-dev', '-f', file('docker-compose.yml')];
      const prod = ['docker', 'compose', '-p', 'lms', '-f', file('docker-compose.prod.yml')];
      const staging = [
        'docker',
        'compose',
        '-p',
        'lms-staging',
        '-f',
        file('docker-compose.prod.yml'),
        '-f',
        file('docker-compose.staging.yml'),
      ];
      const observability = [...prod, '-f', file('docker-compose.observability.yml')];
      expect(await docker.calls()).toEqual([
        // up reads the resolved configuration first (which images to pull or build), then
        // starts without letting Compose build (it built with BuildKit itself, when needed).
        [...dev, 'config'],
        [...dev, 'up', '-d', '--no-build'],
        [...prod, '--env-file', envFile, 'config'],
        [...prod, '--env-file', envFile, 'up', '-d', '--no-build', 'api', 'worker'],
        [...staging, 'config'],
        [...staging, 'up', '-d', '--no-build'],
        [...observability, 'config'],
        [...observability, 'up', '-d', '--no-build'],
        [...prod, 'logs', '--no-color', '-f', '--tail', '10', 'api'],
        [...dev, 'restart', 'worker'],
        [...staging, 'config'],
        [...dev, 'down', '--remove-orphans'],
      ]);
    } finally {
      await docker.close();
      await engine.close();
    }
  });

  it('fall back to docker-compose (v1) without the Compose plugin', async () => {
    const docker = await fakeDockerCli({ plugin: false });
    try {
      const run = await runLmsctl(['restart', '--env', 'prod'], { env: { PATH: docker.path }, cwd: work });
      expect(run.exitCode, run.stderr).toBe(0);
      expect(await docker.calls()).toEqual([
        ['docker-compose', '-p', 'lms', '-f', file('docker-compose.prod.yml'), 'restart'],
      ]);
    } finally {
      await docker.close();
    }
  });

  it('report a failing compose command with exit 1', async () => {
    const docker = await fakeDockerCli({ plugin: true, exitCode: 17 });
    try {
      const run = await runLmsctl(['restart'], { env: { PATH: docker.path }, cwd: work });
      expect(run.exitCode).toBe(1);
      expect(run.stderr).toContain('error: docker compose restart failed (exit code 17)');
    } finally {
      await docker.close();
    }
  });

  it('down --volumes names the volumes and asks first', async () => {
    const docker = await fakeDockerCli({ plugin: true });
    const engine = await fakeEngine('lms', [], ['lms_pgdata', 'lms_lms-backups']);
    try {
      const env = { PATH: docker.path, DOCKER_HOST: engine.dockerHost };
      const refused = await runLmsctl(['down', '--env', 'prod', '--volumes'], { env, cwd: work });
      expect(refused.exitCode).toBe(2);
      expect(refused.stderr).toContain('this deletes the volumes of lms: lms_pgdata, lms_lms-backups');
      expect(await docker.calls()).toEqual([]);
      const done = await runLmsctl(['down', '--env', 'prod', '--volumes', '--yes'], { env, cwd: work });
      expect(done.exitCode).toBe(0);
      expect((await docker.calls()).at(-1)).toEqual([
        'docker',
        'compose',
        '-p',
        'lms',
        '-f',
        file('docker-compose.prod.yml'),
        'down',
        '--remove-orphans',
        '--volumes',
      ]);
    } finally {
      await docker.close();
      await engine.close();
    }
  });
});

describe('which stack', () => {
  it('--project-name, else COMPOSE_PROJECT_NAME, names the project of every command; a bad name is refused', async () => {
    const docker = await fakeDockerCli({ plugin: true });
    try {
      const env = { PATH: docker.path };
      expect((await runLmsctl(['restart', '--project-name', 'lms-ci-7'], { env, cwd: work })).exitCode).toBe(0);
      const fromEnv = await runLmsctl(['logs', '--env', 'prod'], {
        env: { ...env, COMPOSE_PROJECT_NAME: 'lms-blue' },
        cwd: work,
      });
      expect(fromEnv.exitCode, fromEnv.stderr).toBe(0);
      const override = path.join(work, 'site.yml');
      expect((await runLmsctl(['config', '--env', 'prod', '--override', override], { env, cwd: work })).exitCode).toBe(
        0,
      );
      expect(await docker.calls()).toEqual([
        ['docker', 'compose', '-p', 'lms-ci-7', '-f', file('docker-compose.yml'), 'restart'],
        ['docker', 'compose', '-p', 'lms-blue', '-f', file('docker-compose.prod.yml'), 'logs', '--no-color'],
        ['docker', 'compose', '-p', 'lms', '-f', file('docker-compose.prod.yml'), '-f', override, 'config'],
      ]);
      const bad = await runLmsctl(['down', '--project-name', 'LMS Prod'], { env, cwd: work });
      expect(bad.exitCode).toBe(2);
      expect(bad.stderr).toContain('invalid project name "LMS Prod": use lowercase letters, digits');
      expect((await docker.calls()).length).toBe(3);
    } finally {
      await docker.close();
    }
  });
});

const DEV_CONFIG = `services:
  api:
    image: lms-dev:latest
    build: { context: /src, dockerfile: compose/Dockerfile, target: dev, args: { NODE_IMAGE: 'node:20-alpine', PG_MAJOR: '16' } }
  worker:
    image: lms-dev:latest
    build: { context: /src, dockerfile: compose/Dockerfile, target: dev, args: { NODE_IMAGE: 'node:20-alpine', PG_MAJOR: '16' } }
    depends_on: { mailpit: { condition: service_started } }
  mailpit: { image: 'axllent/mailpit:v1.21' }
  grafana: { image: 'grafana/grafana:11.2.0' }
`;

describe('images before up', () => {
  it('a missing image the stack builds is built once with BuildKit (a CLI older than 23 with DOCKER_BUILDKIT)', async () => {
    const docker = await fakeDockerCli({ plugin: true, config: DEV_CONFIG, buildx: false, clientVersion: '20.10.24' });
    const engine = await fakeEngine('lms-dev', [], [], ['lms-dev:latest']);
    try {
      const run = await runLmsctl(['up', 'api', 'worker'], {
        env: { PATH: docker.path, DOCKER_HOST: engine.dockerHost },
        cwd: work,
      });
      expect(run.exitCode, run.stderr).toBe(0);
      const dev = ['-p', 'lms-dev', '-f', file('docker-compose.yml')];
      expect(await docker.calls()).toEqual([
        ['docker', 'compose', ...dev, 'config'],
        [
          'docker',
          'build',
          '-f',
          '/src/compose/Dockerfile',
          '--target',
          'dev',
          '--build-arg',
          'NODE_IMAGE=node:20-alpine',
          '--build-arg',
          'PG_MAJOR=16',
          '-t',
          'lms-dev:latest',
          '/src',
        ],
        ['docker', 'compose', ...dev, 'up', '-d', '--no-build', 'api', 'worker'],
      ]);
      expect(run.stdout).toContain('built lms-dev:latest');
    } finally {
      await docker.close();
      await engine.close();
    }
  });

  it('says so, and starts nothing, when no docker CLI can build with BuildKit', async () => {
    const docker = await fakeDockerCli({
      plugin: true,
      config: DEV_CONFIG,
      buildx: false,
      clientVersion: '28.2.2',
      isolated: true,
    });
    const engine = await fakeEngine('lms-dev', [], [], ['lms-dev:latest']);
    try {
      const run = await runLmsctl(['up', 'api'], {
        env: { PATH: docker.path, DOCKER_HOST: engine.dockerHost },
        cwd: work,
      });
      expect(run.exitCode).toBe(1);
      expect(run.stderr).toContain('error: no Docker CLI here builds with BuildKit, which the Dockerfile needs');
      expect(run.stderr).toContain('28.2.2, no buildx');
      expect(run.stderr).toContain('install the Docker buildx plugin');
      expect((await docker.calls()).map((argv) => argv.at(-1))).toEqual(['config']);
    } finally {
      await docker.close();
      await engine.close();
    }
  });

  it('pulls missing images first — of the named services and their dependencies only; a failed pull starts nothing and suggests --native', async () => {
    const docker = await fakeDockerCli({ plugin: true, config: DEV_CONFIG, failing: 'pull' });
    const engine = await fakeEngine('lms-dev', [], [], ['axllent/mailpit:v1.21', 'grafana/grafana:11.2.0']);
    try {
      const run = await runLmsctl(['up', 'worker'], {
        env: { PATH: docker.path, DOCKER_HOST: engine.dockerHost },
        cwd: work,
      });
      expect(run.exitCode).toBe(1);
      expect(run.stderr).toContain('error: cannot pull axllent/mailpit:v1.21 (mailpit); nothing was started');
      expect(run.stderr).toContain('lmsctl up --native');
      const dev = ['docker', 'compose', '-p', 'lms-dev', '-f', file('docker-compose.yml')];
      expect(await docker.calls()).toEqual([
        [...dev, 'config'],
        [...dev, 'pull', 'mailpit'],
      ]);
      const unknown = await runLmsctl(['up', 'nginx'], {
        env: { PATH: docker.path, DOCKER_HOST: engine.dockerHost },
        cwd: work,
      });
      expect(unknown.exitCode).toBe(2);
      expect(unknown.stderr).toContain('no service nginx in this stack');
    } finally {
      await docker.close();
      await engine.close();
    }
  });

  it('refuses, starting nothing, when a port the new stack publishes is taken on the host', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    const docker = await fakeDockerCli({
      plugin: true,
      config: `services:\n  postgres:\n    image: postgres:16-alpine\n    ports:\n    - 127.0.0.1:${port}:5432/tcp\n`,
    });
    const engine = await fakeEngine('lms-dev', []);
    try {
      const run = await runLmsctl(['up'], { env: { PATH: docker.path, DOCKER_HOST: engine.dockerHost }, cwd: work });
      expect(run.exitCode).toBe(1);
      expect(run.stderr).toContain(
        `error: 127.0.0.1:${port} (postgres) is already in use on this host; nothing was started`,
      );
      expect(run.stderr).toContain(
        'move DEV_POSTGRES_PORT (e.g. DEV_POSTGRES_PORT=15432), or run the dev stack on what this machine has: lmsctl up --native',
      );
      expect((await docker.calls()).map((argv) => argv.at(-1))).toEqual(['config']);
    } finally {
      await new Promise((resolve) => holder.close(resolve));
      await docker.close();
      await engine.close();
    }
  });

  it('a failed up of a new project removes what it created; of an existing one, nothing', async () => {
    const docker = await fakeDockerCli({ plugin: true, failing: 'up' });
    const fresh = await fakeEngine('lms', []);
    try {
      const run = await runLmsctl(['up', '--env', 'prod'], {
        env: { PATH: docker.path, DOCKER_HOST: fresh.dockerHost },
        cwd: work,
      });
      expect(run.exitCode).toBe(1);
      expect(run.stderr).toContain('error: docker compose up failed (exit code 1)');
      expect(run.stderr).toContain('removed what this attempt created for lms');
      expect((await docker.calls()).at(-1)).toEqual([
        'docker',
        'compose',
        '-p',
        'lms',
        '-f',
        file('docker-compose.prod.yml'),
        'down',
        '--volumes',
        '--remove-orphans',
      ]);
    } finally {
      await fresh.close();
    }
    const existing = await fakeEngine('lms', [{ id: 'c1', service: 'postgres', health: ['healthy'] }]);
    try {
      const before = (await docker.calls()).length;
      const run = await runLmsctl(['up', '--env', 'prod'], {
        env: { PATH: docker.path, DOCKER_HOST: existing.dockerHost },
        cwd: work,
      });
      expect(run.exitCode).toBe(1);
      expect((await docker.calls()).slice(before).map((argv) => argv.at(-1))).toEqual(['config', '--no-build']);
    } finally {
      await existing.close();
      await docker.close();
    }
  });
});

describe('health through the Engine API', () => {
  it('up --wait follows health until every service is healthy; ps shows state and health', async () => {
    const docker = await fakeDockerCli({ plugin: true });
    const engine = await fakeEngine('lms', [
      { id: 'c1', service: 'api', health: ['starting', 'starting', 'healthy'] },
      { id: 'c2', service: 'worker', health: ['starting', 'healthy'] },
      // What Docker reports for a stopped container with a healthcheck: unhealthy, whatever its exit.
      { id: 'c3', service: 'migrate', health: ['unhealthy'], state: 'exited', exitCode: 0 },
      { id: 'c4', service: 'caddy', health: [null] },
    ]);
    try {
      const env = { PATH: docker.path, DOCKER_HOST: engine.dockerHost };
      const run = await runLmsctl(['up', '--env', 'prod', '--wait', '--json'], { env, cwd: work });
      expect(run.exitCode, run.stderr).toBe(0);
      const result = JSON.parse(run.stdout) as {
        services: Array<{ service: string; health: string | null; state: string }>;
      };
      expect(result.services.map((service) => [service.service, service.state, service.health])).toEqual([
        ['api', 'running', 'healthy'],
        ['caddy', 'running', null],
        ['migrate', 'exited', 'unhealthy'],
        ['worker', 'running', 'healthy'],
      ]);
      const ps = await runLmsctl(['ps', '--env', 'prod'], { env, cwd: work });
      expect(ps.stdout).toMatch(/^caddy\s+lms-caddy-1\s+running\s+running\s+0\.0\.0\.0:443->443\/tcp$/m);
    } finally {
      await docker.close();
      await engine.close();
    }
  });

  it('up --wait fails naming the unhealthy service with its last log lines', async () => {
    const docker = await fakeDockerCli({ plugin: true });
    const engine = await fakeEngine('lms', [
      {
        id: 'c1',
        service: 'api',
        health: ['starting', 'unhealthy'],
        logs: ['listening', 'error: cannot connect to PostgreSQL at db:5432'],
      },
      { id: 'c2', service: 'worker', health: ['healthy'] },
    ]);
    try {
      const run = await runLmsctl(['up', '--env', 'prod', '--wait'], {
        env: { PATH: docker.path, DOCKER_HOST: engine.dockerHost },
        cwd: work,
      });
      expect(run.exitCode).toBe(1);
      expect(run.stderr).toContain('warning: api: unhealthy — last log lines:');
      expect(run.stderr).toContain('  error: cannot connect to PostgreSQL at db:5432');
      expect(run.stderr).toContain('error: api failed to start');
    } finally {
      await docker.close();
      await engine.close();
    }
  });

  it('up --wait fails when a one-shot service exited non-zero', async () => {
    const docker = await fakeDockerCli({ plugin: true });
    const engine = await fakeEngine('lms', [
      {
        id: 'c1',
        service: 'migrate',
        health: [null],
        state: 'exited',
        exitCode: 1,
        logs: ['error: 0012_x.sql failed'],
      },
      { id: 'c2', service: 'postgres', health: ['healthy'] },
    ]);
    try {
      const run = await runLmsctl(['up', '--env', 'prod', '--wait'], {
        env: { PATH: docker.path, DOCKER_HOST: engine.dockerHost },
        cwd: work,
      });
      expect(run.exitCode).toBe(1);
      expect(run.stderr).toContain('warning: migrate: exited (exit code 1) — last log lines:');
      expect(run.stderr).toContain('error: migrate failed to start');
      expect(run.stderr).toContain('`lmsctl logs <service> --env prod` shows more');
    } finally {
      await docker.close();
      await engine.close();
    }
  });

  it('up --wait gives up after --timeout', async () => {
    const docker = await fakeDockerCli({ plugin: true });
    const engine = await fakeEngine('lms', [{ id: 'c1', service: 'api', health: ['starting'] }]);
    try {
      const run = await runLmsctl(['up', '--env', 'prod', '--wait', '--timeout', '2s'], {
        env: { PATH: docker.path, DOCKER_HOST: engine.dockerHost },
        cwd: work,
      });
      expect(run.exitCode).toBe(1);
      expect(run.stderr).toContain('not healthy after 2.0 s: api (starting)');
    } finally {
      await docker.close();
      await engine.close();
    }
  });

  it('ps without an engine says how to get one', async () => {
    const run = await runLmsctl(['ps'], { env: { DOCKER_HOST: `unix://${path.join(work, 'none.sock')}` }, cwd: work });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain('no Docker engine answers');
  });
});
