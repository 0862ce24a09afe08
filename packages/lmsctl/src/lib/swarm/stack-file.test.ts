import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeDir } from '../compose/compose-cli.js';
import { bytes, swarmStack, type SwarmStack } from './stack-file.js';

/** The prod Compose file resolved by the real docker-compose with compose/test.env, as Swarm gets it. */
describe('the prod Compose file as a Swarm stack', () => {
  let stack: SwarmStack;
  let scratch: string;
  type Service = Record<string, unknown> & { deploy: Record<string, unknown> };
  const service = (name: string) => (stack.file.services as Record<string, Service>)[name]!;

  beforeAll(async () => {
    const config = await execa(
      'docker-compose',
      [
        '-p',
        'lms',
        '-f',
        path.join(composeDir, 'docker-compose.prod.yml'),
        '--env-file',
        path.join(composeDir, 'test.env'),
        'config',
      ],
      { env: { ...process.env, LMS_IMAGE: 'lms:2.0.0' } },
    );
    stack = swarmStack(parseYaml(config.stdout), 'lms');
    scratch = await mkdtemp(path.join(os.tmpdir(), 'lms-stack-file-'));
  });

  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('leaves out the one-shot migrate service and the opt-in pgbouncer profile', () => {
    expect(Object.keys(stack.file.services as object).sort()).toEqual([
      'api',
      'caddy',
      'postgres',
      'redis',
      'scheduler',
      'worker',
    ]);
    expect(stack.appServices.sort()).toEqual(['api', 'scheduler', 'worker']);
    expect(stack.appImage).toBe('lms:2.0.0');
  });

  it("moves the LMS processes' secrets into Docker secrets named by their content, out of the spec", () => {
    const spec = JSON.stringify(stack.file);
    for (const secret of stack.secrets) {
      expect(secret.name).toMatch(new RegExp(`^lms_${secret.variable}_[0-9a-f]{12}$`));
      expect(spec).not.toContain(secret.value);
    }
    expect(stack.secrets.map((secret) => secret.variable)).toEqual(
      expect.arrayContaining(['SECRET_KEY', 'WEBHOOK_SECRET_KEY', 'DATABASE_URL', 'REDIS_URL', 'SMTP_URL']),
    );
    // Empty ones (SECRET_KEY_PREVIOUS outside a rotation) are not made at all.
    expect(stack.secrets.map((secret) => secret.variable)).not.toContain('SECRET_KEY_PREVIOUS');
    expect(service('api').secrets).toContainEqual(
      expect.objectContaining({ target: 'SECRET_KEY', uid: '1000', mode: 0o400 }),
    );
    expect(service('api').environment).not.toHaveProperty('SECRET_KEY');
    // The one-off lmsctl containers get everything, secrets included.
    expect(stack.appEnvironment.SECRET_KEY).toBe(
      stack.secrets.find((secret) => secret.variable === 'SECRET_KEY')!.value,
    );
    expect(stack.appNetworks.sort()).toEqual(['lms_backend', 'lms_default']);
  });

  it("keeps the Compose file's update policy: api and worker start-first, the scheduler, Caddy and the databases stop-first, failures rolled back", () => {
    for (const name of ['api', 'worker']) {
      expect(service(name).deploy.update_config).toMatchObject({
        parallelism: 1,
        order: 'start-first',
        failure_action: 'rollback',
      });
    }
    for (const name of ['scheduler', 'caddy', 'postgres', 'redis']) {
      expect(service(name).deploy.update_config).toMatchObject({ order: 'stop-first', failure_action: 'rollback' });
      expect(service(name).deploy.placement).toEqual({ constraints: ['node.role == manager'] });
    }
    expect(service('api').deploy.rollback_config).toMatchObject({ parallelism: 1, order: 'start-first' });
    expect(service('api').deploy.update_config).toMatchObject({ monitor: '30s', delay: '5s' });
    expect(service('api').deploy.replicas).toBe(3); // API_REPLICAS in test.env
    expect(service('api').deploy.endpoint_mode).toBe('dnsrr');
  });

  it('publishes on the node, mounts the Caddyfile as a config and tmpfs as mounts', () => {
    expect(service('caddy').ports).toContainEqual({ target: 443, published: 443, protocol: 'udp', mode: 'host' });
    expect(service('caddy').configs).toEqual([
      { source: expect.stringMatching(/^lms_Caddyfile_[0-9a-f]{12}$/), target: '/etc/caddy/Caddyfile', mode: 0o444 },
    ]);
    expect(stack.configs[0]!.file).toBe(path.resolve(composeDir, '../ops/caddy/Caddyfile'));
    expect(service('caddy').volumes).toContainEqual({
      type: 'tmpfs',
      target: '/config',
      tmpfs: { size: bytes('16m'), mode: 0o1777 },
    });
    expect(service('postgres').volumes).toContainEqual({
      type: 'tmpfs',
      target: '/dev/shm',
      tmpfs: { size: bytes('256m') },
    });
    expect(service('api').deploy.resources).toMatchObject({ limits: { pids: 256 } });
    for (const name of ['build', 'depends_on', 'restart', 'security_opt', 'tmpfs', 'pids_limit']) {
      expect(service('api')).not.toHaveProperty(name);
    }
  });

  it('is a stack file the docker CLI accepts', async () => {
    const file = path.join(scratch, 'stack.yml');
    await writeFile(file, toYaml(stack.file));
    const checked = await execa('docker', ['stack', 'config', '-c', file], { reject: false });
    expect(checked.stderr).not.toMatch(/unsupported|ignor/i);
    expect(checked.exitCode, checked.stderr).toBe(0);
  });
});
