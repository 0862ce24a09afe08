/**
 * The compose files, the image and the Caddyfile, checked with the tools that read them:
 * docker-compose (1.29.2 validates offline with `config`) for every stack `lmsctl up --env`
 * assembles, and caddy (`validate`, `adapt`). There is no Docker daemon here, so the image is
 * checked for its structure, and its two scripts (entry point, healthcheck) are run directly.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const fromRoot = (...parts: string[]) => path.join(root, ...parts);
const testEnvFile = fromRoot('compose/test.env');

/** The files of each `lmsctl up --env` choice, in order (the later ones override or add). */
const stacks = {
  dev: ['compose/docker-compose.yml'],
  prod: ['compose/docker-compose.prod.yml'],
  staging: ['compose/docker-compose.prod.yml', 'compose/docker-compose.staging.yml'],
  observability: ['compose/docker-compose.prod.yml', 'compose/docker-compose.observability.yml'],
} as const;
type Stack = keyof typeof stacks;
const productionStacks = ['prod', 'staging', 'observability'] as const satisfies Stack[];

interface PortMapping {
  hostIp: string;
  published: string;
  target: string;
  protocol: string;
}

interface Service {
  image?: string;
  build?: { context: string; dockerfile?: string; target?: string };
  user?: string;
  read_only?: boolean;
  privileged?: boolean;
  cap_drop?: string[];
  cap_add?: string[];
  security_opt?: string[];
  network_mode?: string;
  pid?: string;
  healthcheck?: { test?: string[] | string; disable?: boolean };
  deploy?: { replicas?: number; resources?: { limits?: { cpus?: number | string; memory?: string } } };
  pids_limit?: number;
  ports?: Array<string | { published?: number | string; target: number; protocol?: string; host_ip?: string }>;
  depends_on?: Record<string, { condition: string }>;
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | number | null>;
  volumes?: string[];
  tmpfs?: string[];
  networks?: Record<string, unknown>;
  secrets?: Array<{ source: string }>;
  restart?: string;
}

interface ComposeConfig {
  services: Record<string, Service>;
  networks?: Record<string, { internal?: boolean } | null>;
  volumes?: Record<string, unknown>;
  secrets?: Record<string, { file: string }>;
}

let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'lms-compose-test-'));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** An env file in the scratch folder: test.env with `changes` (a null value drops the variable). */
async function envFile(name: string, changes: Record<string, string | null> = {}, base = true): Promise<string> {
  const lines = base ? (await readFile(testEnvFile, 'utf8')).split('\n') : [];
  const kept = lines.filter((line) => {
    const key = /^([A-Z0-9_]+)=/.exec(line)?.[1];
    return !key || !(key in changes);
  });
  for (const [key, value] of Object.entries(changes)) if (value !== null) kept.push(`${key}=${value}`);
  const file = path.join(scratch, `${name}.env`);
  await writeFile(file, `${kept.join('\n')}\n`);
  return file;
}

/** docker-compose with only PATH and a throwaway HOME, so nothing of this machine leaks in. */
function compose(stack: Stack, env: string, args: string[]) {
  const files = stacks[stack].flatMap((file) => ['-f', file]);
  return execa('docker-compose', ['--env-file', env, ...files, ...args], {
    cwd: root,
    reject: false,
    extendEnv: false,
    env: { PATH: process.env.PATH, HOME: scratch },
  });
}

/**
 * The interpreter docker-compose runs on: it has PyYAML (docker-compose cannot load files
 * without it), which turns the resolved configuration into JSON. No YAML parser is added to the
 * workspace for this.
 */
async function composePython(): Promise<string[]> {
  const { stdout } = await execa('sh', ['-c', 'command -v docker-compose']);
  const firstLine = (await readFile(stdout.trim(), 'latin1')).split('\n', 1)[0] ?? '';
  return firstLine.startsWith('#!') ? firstLine.slice(2).trim().split(/\s+/) : ['python3'];
}

async function yamlToJson(text: string): Promise<unknown> {
  const [python, ...args] = await composePython();
  const script = 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)';
  const { stdout } = await execa(python!, [...args, '-c', script], { input: text });
  return JSON.parse(stdout);
}

const resolvedCache = new Map<string, Promise<ComposeConfig>>();

/** The configuration docker-compose resolves for a stack with an env file (test.env by default). */
function resolved(stack: Stack, env = testEnvFile): Promise<ComposeConfig> {
  const key = `${stack} ${env}`;
  let config = resolvedCache.get(key);
  if (!config) {
    config = (async () => {
      const result = await compose(stack, env, ['config']);
      if (result.exitCode !== 0) throw new Error(`docker-compose config (${stack}) failed:\n${result.stderr}`);
      return (await yamlToJson(result.stdout)) as ComposeConfig;
    })();
    resolvedCache.set(key, config);
  }
  return config;
}

/** docker-compose prints ports in the long form, or as "[ip:]published:target/protocol" with an IP. */
function portsOf(service: Service): PortMapping[] {
  return (service.ports ?? []).map((port) => {
    if (typeof port !== 'string') {
      return {
        hostIp: port.host_ip ?? '',
        published: String(port.published ?? ''),
        target: String(port.target),
        protocol: port.protocol ?? 'tcp',
      };
    }
    const [address = '', protocol = 'tcp'] = port.split('/');
    const parts = address.split(':');
    const target = parts.pop() ?? '';
    const published = parts.pop() ?? '';
    return { hostIp: parts.join(':'), published, target, protocol };
  });
}

/** A service's volumes as { source, target, mode }. */
function mountsOf(service: Service): Array<{ source: string; target: string; mode: string }> {
  return (service.volumes ?? []).map((volume) => {
    const [source = '', target = '', mode = 'rw'] = volume.split(':');
    return { source, target, mode };
  });
}

const commandOf = (service: Service): string[] =>
  Array.isArray(service.command) ? service.command : (service.command ?? '').split(' ');

const isRootUser = (user: string | undefined) => !user || /^(root|0)(:.*)?$/.test(user);

async function available(command: string, args: string[]): Promise<boolean> {
  const result = await execa(command, args, { reject: false });
  return result.exitCode === 0;
}

// The validators are installed by .ci/run; a developer without them gets skipped tests, CI a failure.
const inCi = Boolean(process.env.CI);
const haveCompose = inCi || (await available('docker-compose', ['version', '--short']));
const haveCaddy = inCi || (await available('caddy', ['version']));

describe.runIf(haveCompose)('docker-compose config', () => {
  it.each(Object.keys(stacks) as Stack[])('%s: the files validate with a complete env file', async (stack) => {
    const result = await compose(stack, testEnvFile, ['config', '-q']);
    expect(result.stderr).toBe('');
    expect(result.exitCode).toBe(0);
  });

  it('dev: validates with no variable set at all, and warns about none', async () => {
    const result = await compose('dev', await envFile('empty', {}, false), ['config', '-q']);
    expect(result.stderr).toBe('');
    expect(result.exitCode).toBe(0);
  });

  it.each(productionStacks)('%s: refuses to resolve without the required variables, naming one', async (stack) => {
    const result = await compose(stack, await envFile('empty', {}, false), ['config', '-q']);
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toMatch(/[A-Z_]+ is required - /);
  });

  it.each(productionStacks)('%s: a missing SECRET_KEY fails with a message that says what to set', async (stack) => {
    const result = await compose(stack, await envFile('no-secret-key', { SECRET_KEY: null }), ['config', '-q']);
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain('SECRET_KEY is required - at least 64 random characters');
  });
});

describe.runIf(haveCompose)('production hardening', () => {
  it.each(productionStacks)(
    '%s: every service runs non-root, drops all capabilities, no-new-privileges, read-only, healthchecked, limited',
    async (stack) => {
      const { services } = await resolved(stack);
      for (const [name, service] of Object.entries(services)) {
        const where = `${stack}/${name}`;
        expect(isRootUser(service.user), `${where}: user ${service.user}`).toBe(false);
        expect(service.cap_drop, where).toContain('ALL');
        // caddy.Dockerfile strips the binary's file capability, so not even Caddy adds one back.
        expect(service.cap_add ?? [], where).toEqual([]);
        expect(service.security_opt, where).toContain('no-new-privileges:true');
        expect(service.read_only, where).toBe(true);
        expect(service.privileged ?? false, where).toBe(false);
        expect(service.network_mode, where).toBeUndefined();
        expect(service.pid, where).toBeUndefined();
        if (service.restart === 'no') {
          // A one-shot service (migrate) is done when it exited 0; a healthcheck would only make
          // Docker call the stopped container unhealthy (and `lmsctl up --wait` wait on it).
          expect(service.healthcheck?.disable ?? service.healthcheck?.test?.[0] === 'NONE', where).toBe(true);
        } else {
          expect(service.healthcheck?.disable ?? false, where).toBe(false);
          expect(service.healthcheck?.test?.length ?? 0, `${where}: healthcheck`).toBeGreaterThan(0);
          expect(service.healthcheck?.test?.[0], where).not.toBe('NONE');
        }
        expect(Number(service.deploy?.resources?.limits?.cpus), `${where}: cpus`).toBeGreaterThan(0);
        expect(service.deploy?.resources?.limits?.memory, `${where}: memory`).toMatch(/^\d+[KMG]$/);
        expect(service.pids_limit, `${where}: pids_limit`).toBeGreaterThan(0);
      }
    },
  );

  it.each(['prod', 'staging'] as const)('%s: only Caddy publishes ports, exactly 80 and 443', async (stack) => {
    const { services } = await resolved(stack);
    const publishing = Object.entries(services)
      .filter(([, service]) => portsOf(service).length > 0)
      .map(([name]) => name);
    expect(publishing).toEqual(['caddy']);
    const ports = portsOf(services.caddy!).map((port) => `${port.published}:${port.target}/${port.protocol}`);
    expect(ports.sort()).toEqual(['443:443/tcp', '443:443/udp', '80:80/tcp']);
  });

  it('observability: the monitoring UIs are published on 127.0.0.1 only', async () => {
    const { services } = await resolved('observability');
    for (const [name, service] of Object.entries(services)) {
      if (name === 'caddy') continue;
      for (const port of portsOf(service)) expect(port.hostIp, `${name} ${port.published}`).toBe('127.0.0.1');
    }
    expect(portsOf(services.grafana!).map((port) => port.target)).toEqual(['3000']);
  });

  it.each(productionStacks)(
    '%s: PostgreSQL and Redis publish nothing and sit on an internal network',
    async (stack) => {
      const config = await resolved(stack);
      for (const name of ['postgres', 'redis']) {
        const service = config.services[name]!;
        expect(portsOf(service), name).toEqual([]);
        expect(Object.keys(service.networks ?? {}), name).toEqual(['backend']);
      }
      expect(config.networks?.backend?.internal).toBe(true);
      expect(Object.keys(config.services.caddy!.networks ?? { default: null })).not.toContain('backend');
    },
  );

  it.each(productionStacks)('%s: api, worker and scheduler start only after migrate succeeded', async (stack) => {
    const { services } = await resolved(stack);
    for (const name of ['api', 'worker', 'scheduler']) {
      expect(services[name]!.depends_on?.migrate?.condition, name).toBe('service_completed_successfully');
    }
    const migrate = services.migrate!;
    expect(commandOf(migrate)).toEqual(['lmsctl', 'migrate']);
    expect(migrate.restart).toBe('no');
    expect(migrate.depends_on?.postgres?.condition).toBe('service_healthy');
  });

  it('prod: the scheduler runs `lmsctl schedule run` with its backups and metrics on named volumes', async () => {
    const { services, volumes } = await resolved('prod');
    const scheduler = services.scheduler!;
    expect(commandOf(scheduler).slice(0, 3)).toEqual(['lmsctl', 'schedule', 'run']);
    const mounts = mountsOf(scheduler);
    expect(mounts).toContainEqual({ source: 'lms-backups', target: '/app/backups', mode: 'rw' });
    const env = scheduler.environment!;
    expect(String(env.LMS_BACKUP_DIR)).toMatch(/^\/app\/backups\//);
    expect(String(env.LMS_DRILL_DIR)).toMatch(/^\/app\/backups\//);
    expect(mounts).toContainEqual({ source: 'lms-metrics', target: env.LMS_METRICS_TEXTFILE_DIR, mode: 'rw' });
    expect(Object.keys(volumes ?? {})).toEqual(expect.arrayContaining(['lms-backups', 'lms-metrics']));
  });

  it('prod: the worker also runs the periodic-job scheduler, the API listens where Caddy and the checks look', async () => {
    const { services } = await resolved('prod');
    expect(commandOf(services.worker!)).toEqual(['worker', '--scheduler']);
    expect(commandOf(services.api!)).toEqual(['api']);
    expect(services.api!.environment!.PORT).toBe('8000');
    expect(services.worker!.environment!.WORKER_METRICS_PORT).toBe('9464');
    expect(services.caddy!.environment!.API_UPSTREAMS).toBe('api:8000');
  });

  it('prod: API replicas come from API_REPLICAS, 2 by default', async () => {
    expect((await resolved('prod')).services.api!.deploy?.replicas).toBe(3); // test.env
    const defaults = await envFile('no-replicas', { API_REPLICAS: null });
    expect((await resolved('prod', defaults)).services.api!.deploy?.replicas).toBe(2);
  });

  it('prod: the optional PgBouncer pools transactions for the api and worker only; session work stays direct', async () => {
    const direct = 'postgres://lms:0123456789abcdef0123456789abcdef0123456789abcdef@postgres:5432/lms';
    const pooled = await resolved('prod', await envFile('pgbouncer', { LMS_DATABASE_ADDRESS: 'pgbouncer:6432' }));
    const pgbouncer = pooled.services.pgbouncer!;
    expect(pgbouncer.environment).toMatchObject({ POOL_MODE: 'transaction', DB_HOST: 'postgres', LISTEN_PORT: '6432' });
    expect(String(pgbouncer.environment!.IGNORE_STARTUP_PARAMETERS).split(',')).toContain('statement_timeout');
    expect(Object.keys(pgbouncer.networks ?? {})).toEqual(['backend']);
    expect(pgbouncer.depends_on?.postgres?.condition).toBe('service_healthy');
    for (const name of ['api', 'worker']) {
      expect(pooled.services[name]!.environment!.DATABASE_URL, name).toBe(
        direct.replace('postgres:5432', 'pgbouncer:6432'),
      );
    }
    for (const name of ['migrate', 'scheduler'])
      expect(pooled.services[name]!.environment!.DATABASE_URL, name).toBe(direct);
    // Opt-in: `up` starts it only with COMPOSE_PROFILES=pgbouncer, and by default nothing uses it.
    const source = (await yamlToJson(await readFile(fromRoot('compose/docker-compose.prod.yml'), 'utf8'))) as {
      services: Record<string, { profiles?: string[] }>;
    };
    expect(source.services.pgbouncer!.profiles).toEqual(['pgbouncer']);
    expect((await resolved('prod')).services.api!.environment!.DATABASE_URL).toBe(direct);
  });

  it('prod: production settings are fixed, secrets and URLs come from the env file', async () => {
    const managed = await envFile('managed', {
      PROD_DATABASE_URL: 'postgres://lms:pw@db.example.com:5432/lms?sslmode=require',
      PROD_REDIS_URL: 'rediss://:pw@cache.example.com:6380/0',
    });
    const { services } = await resolved('prod', managed);
    for (const name of ['api', 'worker', 'scheduler', 'migrate']) {
      const env = services[name]!.environment!;
      expect(env.NODE_ENV, name).toBe('production');
      expect(env.DEBUG, name).toBe('false');
      expect(String(env.SECRET_KEY).length, name).toBeGreaterThanOrEqual(64);
      expect(env.DATABASE_URL, name).toBe(
        'postgres://lms:0123456789abcdef0123456789abcdef0123456789abcdef@postgres:5432/lms',
      );
      expect(env.PROD_DATABASE_URL, name).toBe('postgres://lms:pw@db.example.com:5432/lms?sslmode=require');
      expect(env.PROD_REDIS_URL, name).toBe('rediss://:pw@cache.example.com:6380/0');
    }
  });

  it('staging: NODE_ENV=staging with DEBUG allowed, and its own database, Redis and backups', async () => {
    const fromProduction = await envFile('staging-copied-from-prod', {
      PROD_DATABASE_URL: 'postgres://lms:pw@prod-db.example.com:5432/lms',
      PROD_REDIS_URL: 'rediss://:pw@prod-cache.example.com:6380/0',
      DEBUG: 'true',
    });
    const prod = await resolved('prod', fromProduction);
    const staging = await resolved('staging', fromProduction);
    for (const name of ['api', 'worker', 'scheduler', 'migrate']) {
      const env = staging.services[name]!.environment!;
      expect(env.NODE_ENV, name).toBe('staging');
      expect(env.DEBUG, name).toBe('true');
      // An env file copied from production must not point staging at production's services.
      expect(env.PROD_DATABASE_URL, name).toBe('');
      expect(env.PROD_REDIS_URL, name).toBe('');
      expect(String(env.DATABASE_URL), name).toMatch(/@postgres:5432\/lms_staging$/);
    }
    expect(staging.services.postgres!.environment!.POSTGRES_DB).toBe('lms_staging');
    for (const name of ['postgres', 'redis', 'scheduler']) {
      const stagingVolumes = mountsOf(staging.services[name]!).map((mount) => mount.source);
      const prodVolumes = mountsOf(prod.services[name]!).map((mount) => mount.source);
      expect(
        stagingVolumes.filter((volume) => prodVolumes.includes(volume)),
        name,
      ).toEqual([]);
    }
  });

  it('prod: every variable of .env.example reaches the processes, or is left out on purpose', async () => {
    // Why each of these is not passed to the production stack.
    const leftOut: Record<string, string> = {
      WEBHOOK_ALLOW_PRIVATE_TARGETS: 'refused in production',
      WORKER_SCHEDULER: 'the worker command passes --scheduler',
      LMS_BACKUP_KEY_FILE: 'needs a mounted key file and `schedule run --encrypt` (compose/README.md)',
      LMS_PG_BIN_DIR: 'the image has the PostgreSQL 16 client tools on PATH',
      AZURE_SUBSCRIPTION_ID: 'lmsctl azure runs from an operator machine or CI, not in the stack',
      AZURE_RESOURCE_GROUP: 'lmsctl azure runs from an operator machine or CI, not in the stack',
      AZURE_ARM_ENDPOINT: 'lmsctl azure runs from an operator machine or CI, not in the stack',
      AZURE_AUTHORITY_HOST: 'lmsctl azure runs from an operator machine or CI, not in the stack',
      AZURE_CLIENT_ID: 'lmsctl azure runs from an operator machine or CI, not in the stack',
      LMS_AZURE_TEST_CA_FILE: 'tests only',
      HOST: 'unset in containers: every interface, where Caddy, the healthchecks and Prometheus reach them',
      DATABASE_DIRECT_URL:
        'migrate and the scheduler use the direct DATABASE_URL; only the api and worker may go through pgbouncer',
    };
    const example = await readFile(fromRoot('.env.example'), 'utf8');
    const documented = [...example.matchAll(/^(?:# )?([A-Z][A-Z0-9_]+)=/gm)].map((match) => match[1]!);
    expect(documented.length).toBeGreaterThan(20);
    const { services } = await resolved('prod');
    const passed = new Set(Object.values(services).flatMap((service) => Object.keys(service.environment ?? {})));
    const missing = documented.filter((name) => !passed.has(name) && !(name in leftOut));
    expect(missing, 'add them to x-app-env in docker-compose.prod.yml, or to leftOut here with the reason').toEqual([]);
  });
});

describe.runIf(haveCompose)('observability wiring', () => {
  it('node_exporter reads the textfile folder the scheduler writes its metrics to', async () => {
    const { services } = await resolved('observability');
    const nodeExporter = services['node-exporter']!;
    const textfileDir = commandOf(nodeExporter)
      .find((arg) => arg.startsWith('--collector.textfile.directory='))
      ?.split('=')[1];
    expect(mountsOf(nodeExporter)).toContainEqual({ source: 'lms-metrics', target: textfileDir, mode: 'ro' });
    const scheduler = services.scheduler!;
    expect(mountsOf(scheduler)).toContainEqual({
      source: 'lms-metrics',
      target: scheduler.environment!.LMS_METRICS_TEXTFILE_DIR,
      mode: 'rw',
    });
    expect(nodeExporter.depends_on?.scheduler).toBeDefined();
  });

  it('every host Prometheus scrapes is a service of the stack', async () => {
    const { services } = await resolved('observability');
    const prometheus = (await yamlToJson(await readFile(fromRoot('ops/observability/prometheus.yml'), 'utf8'))) as {
      scrape_configs: Array<{
        static_configs?: Array<{ targets: string[] }>;
        dns_sd_configs?: Array<{ names: string[] }>;
      }>;
    };
    const hosts = [
      ...new Set(
        prometheus.scrape_configs.flatMap((job) => [
          ...(job.static_configs ?? []).flatMap((config) => config.targets.map((target) => target.split(':')[0]!)),
          ...(job.dns_sd_configs ?? []).flatMap((config) => config.names),
        ]),
      ),
    ].filter((host) => host !== 'localhost');
    expect(hosts.length).toBeGreaterThan(3);
    for (const host of hosts) expect(Object.keys(services), host).toContain(host);
  });

  it('the read replica exporter: opt-in with the replica profile, reads DATABASE_READ_URL, refuses to start without it', async () => {
    const source = (await yamlToJson(await readFile(fromRoot('compose/docker-compose.observability.yml'), 'utf8'))) as {
      services: Record<string, { profiles?: string[] }>;
    };
    expect(source.services['postgres-exporter-replica']!.profiles).toEqual(['replica']);
    const replicaUrl = 'postgres://lms:pw@replica.example.com:5432/lms?sslmode=require';
    const withReplica = await envFile('replica', { DATABASE_READ_URL: replicaUrl });
    const exporter = (await resolved('observability', withReplica)).services['postgres-exporter-replica']!;
    expect(exporter.environment!.DATABASE_READ_URL).toBe(replicaUrl);
    expect(exporter.image).toBe((await resolved('observability')).services['postgres-exporter']!.image);
    // The entry point as the container runs it (docker-compose config keeps `$$` escaped), without
    // the URL: one line that says what to do, exit 1.
    const script = (exporter.entrypoint as string[])[2]!.replaceAll('$$', '$');
    const unset = await execa('sh', ['-c', script], {
      env: { PATH: process.env.PATH },
      extendEnv: false,
      reject: false,
    });
    expect(unset.exitCode).toBe(1);
    expect(unset.stderr).toBe(
      'DATABASE_READ_URL is not set: set it to the read replica, or run without the replica profile',
    );
  });

  it('Prometheus, Alertmanager and Grafana get their configuration from ops/observability', async () => {
    const { services } = await resolved('observability');
    const binds = (name: string) =>
      mountsOf(services[name]!).filter((mount) => mount.source.startsWith('/') && mount.mode === 'ro');
    expect(binds('prometheus').map((mount) => mount.target)).toEqual(
      expect.arrayContaining(['/etc/prometheus/prometheus.yml', '/etc/prometheus/alerts.yml']),
    );
    expect(binds('alertmanager').map((mount) => mount.target)).toContain('/etc/alertmanager/alertmanager.yml');
    expect(binds('grafana').map((mount) => mount.target)).toEqual(
      expect.arrayContaining(['/etc/grafana/provisioning', '/var/lib/grafana/dashboards']),
    );
    for (const name of ['prometheus', 'alertmanager', 'grafana']) {
      for (const mount of binds(name)) {
        expect(mount.source.startsWith(fromRoot('ops/observability')), mount.source).toBe(true);
        await expect(readFile(mount.source).catch((error: NodeJS.ErrnoException) => error.code)).resolves.not.toBe(
          'ENOENT',
        );
      }
    }
  });

  it('Alertmanager gets every secret file its configuration reads from /run/secrets', async () => {
    const { services, secrets } = await resolved('observability');
    const alertmanagerYml = await readFile(fromRoot('ops/observability/alertmanager.yml'), 'utf8');
    const needed = [...new Set([...alertmanagerYml.matchAll(/\/run\/secrets\/([a-z0-9_]+)/g)].map((m) => m[1]!))];
    expect(needed.length).toBeGreaterThan(0);
    const given = (services.alertmanager!.secrets ?? []).map((secret) => secret.source);
    expect(given.sort()).toEqual(needed.sort());
    for (const name of needed) expect(secrets?.[name]?.file, name).toBeTruthy();
  });
});

describe.runIf(haveCompose)('dev stack', () => {
  it('runs api, worker and scheduler from the mounted sources with reload', async () => {
    const { services } = await resolved('dev', await envFile('empty', {}, false));
    for (const name of ['api', 'worker', 'scheduler']) {
      const service = services[name]!;
      expect(service.build?.target, name).toBe('dev');
      expect(commandOf(service), name).toContain('--watch');
      const sources = mountsOf(service).filter((mount) => mount.target.startsWith('/src/packages/'));
      expect(sources.length, name).toBeGreaterThan(0);
      for (const mount of sources) expect(mount.mode, mount.target).toBe('ro');
    }
    expect(commandOf(services.scheduler!)).toEqual(expect.arrayContaining(['schedule', 'run']));
    expect(services.api!.depends_on?.migrate?.condition).toBe('service_completed_successfully');
  });

  it('has PostgreSQL 16, Redis 7 saving every 60 s, and Mailpit, published on 127.0.0.1', async () => {
    const { services } = await resolved('dev', await envFile('empty', {}, false));
    expect(services.postgres!.image).toBe('postgres:16-alpine');
    expect(mountsOf(services.postgres!)[0]?.target).toBe('/var/lib/postgresql/data');
    expect(services.redis!.image).toBe('redis:7-alpine');
    expect(commandOf(services.redis!).join(' ')).toContain('--save 60 1');
    expect(
      portsOf(services.mailpit!)
        .map((port) => port.target)
        .sort(),
    ).toEqual(['1025', '8025']);
    expect(services.worker!.environment!.SMTP_URL).toBe('smtp://mailpit:1025');
    for (const [name, service] of Object.entries(services)) {
      for (const port of portsOf(service)) expect(port.hostIp, `${name} ${port.target}`).toBe('127.0.0.1');
    }
  });
});

/** caddy with its storage in the scratch folder and only the given variables. */
function caddy(args: string[], env: Record<string, string> = {}) {
  return execa('caddy', [...args, '--adapter', 'caddyfile', '--config', fromRoot('ops/caddy/Caddyfile')], {
    cwd: root,
    reject: false,
    extendEnv: false,
    env: { PATH: process.env.PATH, HOME: scratch, XDG_DATA_HOME: scratch, XDG_CONFIG_HOME: scratch, ...env },
  });
}

const productionCaddyEnv = {
  APP_DOMAIN: 'lms.example.com',
  LETSENCRYPT_EMAIL: 'ops@example.com',
  ACME_CA: 'https://acme-staging-v02.api.letsencrypt.org/directory',
};

/** Every handler of the adapted JSON configuration, depth first. */
function handlers(node: unknown, found: Array<Record<string, unknown>> = []): Array<Record<string, unknown>> {
  if (Array.isArray(node)) for (const item of node) handlers(item, found);
  else if (node && typeof node === 'object') {
    const record = node as Record<string, unknown>;
    if (typeof record.handler === 'string') found.push(record);
    for (const value of Object.values(record)) handlers(value, found);
  }
  return found;
}

describe.runIf(haveCaddy)('Caddyfile', () => {
  it('validates with no variable set', async () => {
    const result = await caddy(['validate']);
    expect(result.stdout + result.stderr).toContain('Valid configuration');
    expect(result.exitCode).toBe(0);
  });

  it('validates with a production domain, contact and the staging CA', async () => {
    const result = await caddy(['validate'], productionCaddyEnv);
    expect(result.exitCode).toBe(0);
  });

  it('is formatted as `caddy fmt` writes it', async () => {
    const result = await execa('caddy', ['fmt', fromRoot('ops/caddy/Caddyfile')], { reject: false });
    expect(result.stdout.trim()).toBe((await readFile(fromRoot('ops/caddy/Caddyfile'), 'utf8')).trim());
  });

  it('issues certificates for APP_DOMAIN from ACME_CA with LETSENCRYPT_EMAIL', async () => {
    const result = await caddy(['adapt'], productionCaddyEnv);
    expect(result.exitCode).toBe(0);
    const config = JSON.parse(result.stdout);
    const policy = config.apps.tls.automation.policies[0];
    expect(policy.subjects).toEqual(['lms.example.com']);
    expect(policy.issuers[0]).toMatchObject({
      module: 'acme',
      ca: 'https://acme-staging-v02.api.letsencrypt.org/directory',
      email: 'ops@example.com',
    });
  });

  it('sends HSTS and drops Server (the API owns the other security headers), compresses, hides /metrics and proxies to the API with health checks', async () => {
    const result = await caddy(['adapt'], productionCaddyEnv);
    const all = handlers(JSON.parse(result.stdout));
    const headers = all
      .filter((handler) => handler.handler === 'headers')
      .map((handler) => handler.response as { set?: Record<string, string[]>; delete?: string[] });
    const set = Object.assign({}, ...headers.map((response) => response.set ?? {})) as Record<string, string[]>;
    expect(set['Strict-Transport-Security']?.[0]).toMatch(/^max-age=\d{8,}/);
    for (const owned of ['X-Content-Type-Options', 'X-Frame-Options', 'X-Xss-Protection', 'Referrer-Policy']) {
      expect(set[owned], owned).toBeUndefined();
    }
    expect(headers.flatMap((response) => response.delete ?? [])).toContain('Server');
    const encode = all.find((handler) => handler.handler === 'encode') as { encodings: Record<string, unknown> };
    expect(Object.keys(encode.encodings).sort()).toEqual(['gzip', 'zstd']);
    expect(result.stdout).toContain('"/metrics"');
    expect(all.some((handler) => handler.handler === 'static_response' && handler.status_code === 404)).toBe(true);
    const proxy = all.find((handler) => handler.handler === 'reverse_proxy') as {
      upstreams: Array<{ dial: string }>;
      health_checks: { active: { uri: string; interval: number }; passive: { fail_duration: number } };
    };
    expect(proxy.upstreams).toEqual([{ dial: 'api:8000' }]);
    expect(proxy.health_checks.active.uri).toBe('/ready');
    expect(proxy.health_checks.active.interval).toBeGreaterThan(0);
    expect(proxy.health_checks.passive.fail_duration).toBeGreaterThan(0);
  });

  it('takes the replicas as separate upstreams from API_UPSTREAMS', async () => {
    const result = await caddy(['adapt'], { API_UPSTREAMS: 'lms-api-1:8000 lms-api-2:8000' });
    const proxy = handlers(JSON.parse(result.stdout)).find((handler) => handler.handler === 'reverse_proxy');
    expect(proxy?.upstreams).toEqual([{ dial: 'lms-api-1:8000' }, { dial: 'lms-api-2:8000' }]);
  });
});

/** The Dockerfile's instructions (continuation lines joined, comments dropped), per stage. */
async function dockerfileStages(file: string): Promise<Array<{ from: string; name: string; lines: string[] }>> {
  const text = (await readFile(fromRoot(file), 'utf8')).replace(/\\\n/g, ' ');
  const stages: Array<{ from: string; name: string; lines: string[] }> = [];
  for (const line of text.split('\n').map((raw) => raw.trim())) {
    if (!line || line.startsWith('#')) continue;
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) stages.push({ from: from[1]!, name: from[2] ?? '', lines: [] });
    else stages.at(-1)?.lines.push(line.replace(/\s+/g, ' '));
  }
  return stages;
}

describe('image', () => {
  it('is multi-stage; the final stage is the runtime, non-root, with a healthcheck and the entry point', async () => {
    const stages = await dockerfileStages('compose/Dockerfile');
    expect(stages.map((stage) => stage.name)).toEqual(['os', 'deps', 'dev', 'build', 'runtime']);
    const runtime = stages.at(-1)!;
    expect(runtime.from).toBe('os');
    const user = runtime.lines.filter((line) => line.startsWith('USER ')).at(-1);
    expect(user).toBeDefined();
    expect(isRootUser(user!.slice(5))).toBe(false);
    expect(runtime.lines.some((line) => /^HEALTHCHECK .*CMD \["lms-healthcheck"\]/.test(line))).toBe(true);
    expect(runtime.lines).toContain('ENTRYPOINT ["/sbin/tini", "--", "lms-entrypoint"]');
    expect(runtime.lines).toContain('CMD ["api"]');
    const dev = stages.find((stage) => stage.name === 'dev')!;
    expect(
      isRootUser(
        dev.lines
          .filter((line) => line.startsWith('USER '))
          .at(-1)
          ?.slice(5),
      ),
    ).toBe(false);
  });

  it('copies only the deployed production packages into the runtime stage', async () => {
    const runtime = (await dockerfileStages('compose/Dockerfile')).at(-1)!;
    const copies = runtime.lines.filter((line) => line.startsWith('COPY '));
    for (const copy of copies) {
      if (copy.includes('--from=')) expect(copy, copy).toMatch(/^COPY --from=build \/out\/(api|worker|lmsctl)\//);
      else expect(copy, copy).toMatch(/^COPY --chmod=0755 compose\/(docker-entrypoint|healthcheck)\.sh /);
    }
    expect(copies.filter((copy) => copy.includes('--from=')).length).toBeGreaterThanOrEqual(9);
    expect(runtime.lines.join('\n')).not.toMatch(/pnpm (install|fetch|add)|npm (install|ci)|COPY \. /);
    const build = (await dockerfileStages('compose/Dockerfile')).find((stage) => stage.name === 'build')!;
    for (const name of ['api', 'worker', 'lmsctl']) {
      expect(build.lines.join('\n')).toMatch(
        new RegExp(`pnpm --filter @lms/${name} deploy --prod [^\\n]*/out/${name}`),
      );
    }
  });

  it('installs from the lockfile with the pinned pnpm', async () => {
    const text = await readFile(fromRoot('compose/Dockerfile'), 'utf8');
    expect(text).toMatch(/pnpm install [^\n]*--frozen-lockfile/);
    const pinned = /^ARG PNPM_VERSION=(\S+)$/m.exec(text)?.[1];
    const manifest = JSON.parse(await readFile(fromRoot('package.json'), 'utf8')) as { packageManager: string };
    expect(`pnpm@${pinned}`).toBe(manifest.packageManager);
    expect(text).not.toContain('corepack enable');
  });

  it('builds without a registry for its frontend and without relying on a warm cache mount', async () => {
    const text = await readFile(fromRoot('compose/Dockerfile'), 'utf8');
    // A `# syntax=` line makes BuildKit pull a frontend image; the built-in one handles the file.
    expect(text).not.toMatch(/^#\s*syntax=/m);
    // The pnpm store is a cache mount: a builder with an imported layer cache (the fetch layer
    // cached, the mount empty) failed `--offline` installs with ERR_PNPM_NO_OFFLINE_TARBALL.
    for (const line of text.split('\n').filter((candidate) => /pnpm .*(install|deploy)/.test(candidate))) {
      expect(line).not.toMatch(/--offline\b/);
    }
  });

  it('has client tools of the same PostgreSQL major as the bundled server', async () => {
    const text = await readFile(fromRoot('compose/Dockerfile'), 'utf8');
    const clientMajor = /^ARG PG_MAJOR=(\d+)$/m.exec(text)?.[1];
    for (const file of ['compose/docker-compose.yml', 'compose/docker-compose.prod.yml']) {
      const compose = await readFile(fromRoot(file), 'utf8');
      expect(compose, file).toContain(`\${POSTGRES_IMAGE:-postgres:${clientMajor}-alpine}`);
    }
  });

  it('keeps installed output, backups, logs and secrets out of the build context', async () => {
    const ignored = (await readFile(fromRoot('.dockerignore'), 'utf8')).split('\n').map((line) => line.trim());
    for (const entry of ['.git', '**/node_modules', '**/dist', 'backups', '.lms', '**/*.log', '.env']) {
      expect(ignored, entry).toContain(entry);
    }
  });

  it('runs Caddy as a non-root user', async () => {
    const stages = await dockerfileStages('compose/caddy.Dockerfile');
    const user = stages
      .at(-1)!
      .lines.filter((line) => line.startsWith('USER '))
      .at(-1);
    expect(isRootUser(user?.slice(5))).toBe(false);
  });
});

describe('entry point', () => {
  /** Runs docker-entrypoint.sh with a fake `node` that prints its arguments and DATABASE_URL/REDIS_URL. */
  async function entrypoint(args: string[], env: Record<string, string> = {}) {
    const bin = path.join(scratch, 'bin');
    await mkdir(bin, { recursive: true });
    const fakeNode = path.join(bin, 'node');
    await writeFile(
      fakeNode,
      '#!/bin/sh\nprintf "%s\\n" "node $*" "DATABASE_URL=${DATABASE_URL:-}" "REDIS_URL=${REDIS_URL:-}"\n',
      { mode: 0o755 },
    );
    const result = await execa('sh', [fromRoot('compose/docker-entrypoint.sh'), ...args], {
      reject: false,
      extendEnv: false,
      env: { PATH: `${bin}:${process.env.PATH}`, LMS_APP_DIR: '/app', ...env },
    });
    return { ...result, lines: result.stdout.split('\n') };
  }

  it.each([
    [[], 'node /app/api/dist/main.js'],
    [['api'], 'node /app/api/dist/main.js'],
    [['worker', '--queues', 'emails,webhooks'], 'node /app/worker/dist/main.js --queues emails,webhooks'],
    [['scheduler', '--prune-keep', '7'], 'node -- /app/lmsctl/bin/lmsctl.js schedule run --prune-keep 7'],
    [['lmsctl', '--env-file', 'x.env', 'status'], 'node -- /app/lmsctl/bin/lmsctl.js --env-file x.env status'],
  ])('%j runs %s', async (args, expected) => {
    const result = await entrypoint(args);
    expect(result.exitCode).toBe(0);
    expect(result.lines[0]).toBe(expected);
  });

  it('runs anything else as given', async () => {
    const result = await entrypoint(['sh', '-c', 'echo hello from $0']);
    expect(result.stdout).toBe('hello from sh');
  });

  it('lets PROD_DATABASE_URL / PROD_REDIS_URL replace the bundled services, and only when set', async () => {
    const bundled = { DATABASE_URL: 'postgres://lms:x@postgres:5432/lms', REDIS_URL: 'redis://:x@redis:6379/0' };
    const unset = await entrypoint(['api'], { ...bundled, PROD_DATABASE_URL: '', PROD_REDIS_URL: '' });
    expect(unset.lines.slice(1)).toEqual([`DATABASE_URL=${bundled.DATABASE_URL}`, `REDIS_URL=${bundled.REDIS_URL}`]);
    const managed = await entrypoint(['lmsctl', 'status'], {
      ...bundled,
      PROD_DATABASE_URL: 'postgres://lms:y@db.example.com:5432/lms',
      PROD_REDIS_URL: 'rediss://:y@cache.example.com:6380/0',
    });
    expect(managed.lines.slice(1)).toEqual([
      'DATABASE_URL=postgres://lms:y@db.example.com:5432/lms',
      'REDIS_URL=rediss://:y@cache.example.com:6380/0',
    ]);
  });

  it('exports the Docker secrets in /run/secrets as the variables they are named after, unless set', async () => {
    const secrets = path.join(scratch, 'secrets');
    await mkdir(secrets, { recursive: true });
    await writeFile(path.join(secrets, 'DATABASE_URL'), 'postgres://lms:from-secret@postgres:5432/lms');
    await writeFile(path.join(secrets, 'REDIS_URL'), 'redis://:from-secret@redis:6379/0');
    // Not variable names: left alone (and `$(…)` in a name would run if it were evaluated).
    await writeFile(path.join(secrets, 'alertmanager_smtp_password'), 'x');
    await writeFile(path.join(secrets, 'A$(touch pwned)'), 'x');
    const result = await entrypoint(['api'], {
      LMS_SECRETS_DIR: secrets,
      REDIS_URL: 'redis://:from-env@redis:6379/0',
    });
    expect(result.lines.slice(1)).toEqual([
      'DATABASE_URL=postgres://lms:from-secret@postgres:5432/lms',
      'REDIS_URL=redis://:from-env@redis:6379/0',
    ]);
    await expect(readFile(path.join(process.cwd(), 'pwned'))).rejects.toThrow();
  });
});

describe('healthcheck', () => {
  let server: http.Server;
  let port: number;

  beforeAll(async () => {
    server = http.createServer((request, response) => {
      response.writeHead(request.url === '/health' ? 200 : 503).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  /** A port nothing listens on. */
  async function closedPort(): Promise<number> {
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port: free } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    return free;
  }

  function healthcheck(args: string[], env: Record<string, string> = {}) {
    return execa('sh', [fromRoot('compose/healthcheck.sh'), ...args], {
      reject: false,
      extendEnv: false,
      env: { PATH: process.env.PATH, ...env },
    });
  }

  it('is healthy when the URL answers 2xx, unhealthy with the reason otherwise', async () => {
    expect((await healthcheck([`http://127.0.0.1:${port}/health`])).exitCode).toBe(0);
    const failing = await healthcheck([`http://127.0.0.1:${port}/ready`]);
    expect(failing.exitCode).toBe(1);
    expect(failing.stderr).toContain('answered 503');
    const closed = await healthcheck([`http://127.0.0.1:${await closedPort()}/health`]);
    expect(closed.exitCode).toBe(1);
    expect(closed.stderr).toContain('ECONNREFUSED');
  });

  it('without a URL, checks the API port and the worker port, so one image serves both', async () => {
    const other = String(await closedPort());
    expect((await healthcheck([], { PORT: String(port), WORKER_METRICS_PORT: other })).exitCode).toBe(0);
    expect((await healthcheck([], { PORT: other, WORKER_METRICS_PORT: String(port) })).exitCode).toBe(0);
    expect((await healthcheck([], { PORT: other, WORKER_METRICS_PORT: other })).exitCode).toBe(1);
    expect((await healthcheck([], { HEALTHCHECK_URL: `http://127.0.0.1:${port}/health`, PORT: other })).exitCode).toBe(
      0,
    );
  });
});
