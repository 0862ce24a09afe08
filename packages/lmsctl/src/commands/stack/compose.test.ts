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
      expect(await docker.calls()).toEqual([
        ['docker', 'compose', '-p', 'lms-dev', '-f', file('docker-compose.yml'), 'up', '-d'],
        [
          'docker',
          'compose',
          '-p',
          'lms',
          '-f',
          file('docker-compose.prod.yml'),
          '--env-file',
          envFile,
          'up',
          '-d',
          '--build',
          'api',
          'worker',
        ],
        [
          'docker',
          'compose',
          '-p',
          'lms-staging',
          '-f',
          file('docker-compose.prod.yml'),
          '-f',
          file('docker-compose.staging.yml'),
          'up',
          '-d',
        ],
        [
          'docker',
          'compose',
          '-p',
          'lms',
          '-f',
          file('docker-compose.prod.yml'),
          '-f',
          file('docker-compose.observability.yml'),
          'up',
          '-d',
        ],
        ['docker', 'compose', '-p', 'lms', '-f', file('docker-compose.prod.yml'), 'logs', '-f', '--tail', '10', 'api'],
        ['docker', 'compose', '-p', 'lms-dev', '-f', file('docker-compose.yml'), 'restart', 'worker'],
        [
          'docker',
          'compose',
          '-p',
          'lms-staging',
          '-f',
          file('docker-compose.prod.yml'),
          '-f',
          file('docker-compose.staging.yml'),
          'config',
        ],
        ['docker', 'compose', '-p', 'lms-dev', '-f', file('docker-compose.yml'), 'down'],
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
      expect(run.stderr).toContain('failed (exit code 17)');
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
        '--volumes',
      ]);
    } finally {
      await docker.close();
      await engine.close();
    }
  });
});

describe('health through the Engine API', () => {
  it('up --wait follows health until every service is healthy; ps shows state and health', async () => {
    const docker = await fakeDockerCli({ plugin: true });
    const engine = await fakeEngine('lms', [
      { id: 'c1', service: 'api', health: ['starting', 'starting', 'healthy'] },
      { id: 'c2', service: 'worker', health: ['starting', 'healthy'] },
      { id: 'c3', service: 'migrate', health: [null], state: 'exited', exitCode: 0 },
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
        ['migrate', 'exited', null],
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
