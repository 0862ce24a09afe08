import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliEntry, tsxLoader } from '../packages/lmsctl/src/testing/run-cli.js';
import {
  containerOf,
  docker,
  eventually,
  freePort,
  leftovers,
  lmsctl,
  machineEnv,
  projectName,
  removeProject,
  repoRoot,
} from './harness.js';

/**
 * The development stack (compose/docker-compose.yml) as a developer runs it: `lmsctl up --wait`
 * builds the dev image with BuildKit and starts everything, then ps, logs, restart and down.
 */
const project = projectName('dev');
const image = `${project}-dev:latest`;
let env: Record<string, string>;
let apiUrl: string;
let mailpitUrl: string;

interface PsService {
  service: string;
  state: string;
  health: string | null;
  exitCode: number | null;
}

beforeAll(async () => {
  const [api, worker, mailpitUi, smtp, postgres, redis] = await Promise.all(Array.from({ length: 6 }, freePort));
  env = {
    COMPOSE_PROJECT_NAME: project,
    DEV_API_PORT: String(api),
    DEV_WORKER_METRICS_PORT: String(worker),
    DEV_MAILPIT_UI_PORT: String(mailpitUi),
    DEV_SMTP_PORT: String(smtp),
    DEV_POSTGRES_PORT: String(postgres),
    DEV_REDIS_PORT: String(redis),
  };
  apiUrl = `http://127.0.0.1:${api}`;
  mailpitUrl = `http://127.0.0.1:${mailpitUi}`;
});

afterAll(async () => {
  await removeProject(project);
  await docker(['rmi', image], { reject: false });
});

describe('the dev stack', () => {
  it('lmsctl up --wait builds the dev image and exits 0 once everything is healthy, migrate exited 0', async () => {
    const up = await lmsctl(['up', '--wait', '--timeout', '10m', '--json'], env);
    expect(up.exitCode, up.stderr.slice(-3000)).toBe(0);
    const result = JSON.parse(up.stdout) as { project: string; built: string[]; services: PsService[] };
    expect(result.project).toBe(project);
    expect(result.built).toEqual([image]);
    expect(result.services.map((service) => service.service).sort()).toEqual([
      'api',
      'mailpit',
      'migrate',
      'postgres',
      'redis',
      'scheduler',
      'worker',
    ]);
  });

  it('answers on the published port; a registration e-mail reaches the mail catcher', async () => {
    expect((await fetch(`${apiUrl}/health`)).status).toBe(200);
    const email = `e2e-${project}@example.com`;
    const register = await fetch(`${apiUrl}/api/v1/auth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password: 'a-long-e2e-password-1', name: 'E2E' }),
    });
    expect(register.status, await register.clone().text()).toBe(201);
    const message = await eventually('the welcome e-mail', async () => {
      const inbox = (await (await fetch(`${mailpitUrl}/api/v1/messages`)).json()) as {
        messages: Array<{ To: unknown; Subject: string }>;
      };
      return inbox.messages.find((candidate) => JSON.stringify(candidate.To).includes(email));
    });
    expect(message.Subject).toMatch(/welcome/i);
  });

  it('lmsctl ps shows every service healthy, and migrate as exited 0', async () => {
    const ps = await lmsctl(['ps', '--json'], env);
    expect(ps.exitCode, ps.stderr).toBe(0);
    const services = (JSON.parse(ps.stdout) as { services: PsService[] }).services;
    for (const service of services) {
      if (service.service === 'migrate') expect([service.state, service.exitCode]).toEqual(['exited', 0]);
      else expect([service.service, service.state, service.health]).toEqual([service.service, 'running', 'healthy']);
    }
    const table = await lmsctl(['ps'], env);
    expect(table.stdout).toMatch(/^migrate\s+\S+\s+exited\s+exited 0\s*$/m);
  });

  it('lmsctl logs api prints without escape codes into a pipe', async () => {
    // Not through the test runner's lmsctl(), which sets NO_COLOR: a plain pipe must be enough.
    const logs = await execa(
      process.execPath,
      ['--conditions=lms-source', '--import', tsxLoader, '--', cliEntry, 'logs', 'api', '--tail', '20'],
      {
        cwd: repoRoot,
        extendEnv: false,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, TERM: 'xterm-256color', ...machineEnv(), ...env },
        reject: false,
      },
    );
    expect(logs.exitCode, logs.stderr).toBe(0);
    expect(logs.stdout).toContain('api listening');
    expect(logs.stdout).not.toContain('\u001b[');
  });

  it('lmsctl restart worker restarts it and it becomes healthy again', async () => {
    const worker = await containerOf(project, 'worker');
    const before = (await docker(['inspect', '-f', '{{.State.StartedAt}}', worker])).stdout;
    const restart = await lmsctl(['restart', 'worker'], env);
    expect(restart.exitCode, restart.stderr).toBe(0);
    expect(restart.stdout).toContain(`restarted worker of ${project}`);
    const after = (await docker(['inspect', '-f', '{{.State.StartedAt}}', worker])).stdout;
    expect(after).not.toBe(before);
    await eventually('the worker healthy again', async () => {
      const health = (await docker(['inspect', '-f', '{{.State.Health.Status}}', worker])).stdout;
      return health.trim() === 'healthy' ? true : undefined;
    });
  });

  it('lmsctl down --volumes --yes leaves no container, network or volume of the project', async () => {
    const down = await lmsctl(['down', '--volumes', '--yes'], env);
    expect(down.exitCode, down.stderr).toBe(0);
    expect(await leftovers(project)).toEqual({ containers: [], volumes: [], networks: [] });
  });
});
