import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The prod (or staging) Compose file, as `compose config` resolved it, turned into a Swarm stack
 * file for `docker stack deploy`. Swarm reads the same format but runs it differently, so:
 *
 * - the one-shot `migrate` service is left out: a Swarm service restarts or completes, it cannot
 *   gate others; lmsctl runs the migrations itself, in a one-off container, before the stack
 *   deploys (and before every `deploy`);
 * - the LMS processes' secrets (keys, URLs with passwords) leave the environment and become Docker
 *   secrets, mounted at /run/secrets/<VARIABLE>, which the image's entry point exports again; a
 *   secret's name carries a hash of its content (secrets are immutable: a changed value is a new
 *   secret, and the services switch to it in a rolling update);
 * - files bind-mounted read-only (the Caddyfile) become Docker configs, so any node can run them;
 * - published ports bind on the node in host mode (the ingress routing mesh needs IPVS, which
 *   not every kernel offers), and services are found by DNS round robin (`endpoint_mode: dnsrr`)
 *   rather than a virtual IP, for the same reason; Caddy resolves `api` on every new connection;
 * - update_config / rollback_config come from the Compose file (the prod file sets them: one task
 *   at a time, start-first or stop-first, a failing task rolls the service back); a service
 *   without them gets the same, stop-first where it holds state on the node;
 * - what Swarm ignores or refuses goes: build, depends_on, restart (restart_policy instead),
 *   security_opt, profiles, container_name; tmpfs and shm_size become tmpfs mounts, pids_limit a
 *   resource limit.
 */

/** How long Swarm watches a new task for failure, for a service whose Compose file sets no update_config. */
export const SWARM_MONITOR = '30s';

/** Variables of the LMS processes that are secrets: Docker secrets in a Swarm stack. */
export const APP_SECRET_VARIABLES = [
  'SECRET_KEY',
  'SECRET_KEY_PREVIOUS',
  'WEBHOOK_SECRET_KEY',
  'WEBHOOK_SECRET_KEY_PREVIOUS',
  'DATABASE_URL',
  'DATABASE_DIRECT_URL',
  'DATABASE_READ_URL',
  'PROD_DATABASE_URL',
  'REDIS_URL',
  'PROD_REDIS_URL',
  'SMTP_URL',
  'PUSHGATEWAY_URL',
] as const;

/** Services whose tasks hold state on the node (a volume) or a host port: never two at once. */
const STOP_FIRST = new Set(['caddy', 'scheduler', 'postgres', 'redis', 'pgbouncer']);
/** Services pinned to a manager: their named volumes live on one node. */
const PINNED = new Set(['caddy', 'scheduler', 'postgres', 'redis']);
/** The one-shot service lmsctl runs itself. */
export const MIGRATE_SERVICE = 'migrate';

export interface StackSecret {
  /** The Docker secret's name: `<project>_<variable>_<hash>`. */
  name: string;
  variable: string;
  value: string;
}

export interface StackConfigFile {
  name: string;
  file: string;
}

export interface SwarmStack {
  /** The stack file for `docker stack deploy -c`. */
  file: Record<string, unknown>;
  secrets: StackSecret[];
  configs: StackConfigFile[];
  /** The environment of the LMS processes (secrets included): for lmsctl's one-off containers. */
  appEnvironment: Record<string, string>;
  /** The image the LMS services run. */
  appImage: string;
  /** The networks a one-off LMS container joins, as Swarm names them. */
  appNetworks: string[];
  /** The LMS services of the stack (api, worker, scheduler). */
  appServices: string[];
  /** Only some of the stack's services: deployed without pruning the others. */
  partial?: boolean;
}

type Service = Record<string, unknown>;

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

export function swarmStack(
  config: unknown,
  project: string,
  options: { activeProfiles?: string[]; readConfigFile?: (file: string) => string } = {},
): SwarmStack {
  const activeProfiles = options.activeProfiles ?? [];
  const readConfigFile = options.readConfigFile ?? ((file: string) => readFileSync(file, 'utf8'));
  if (!isRecord(config) || !isRecord(config.services)) throw new Error('the resolved Compose file has no services');
  const services = Object.entries(config.services).filter(
    (entry): entry is [string, Service] =>
      isRecord(entry[1]) &&
      entry[0] !== MIGRATE_SERVICE &&
      (!Array.isArray(entry[1].profiles) ||
        entry[1].profiles.some((profile) => activeProfiles.includes(String(profile)))),
  );
  const migrate = config.services[MIGRATE_SERVICE];
  const app = isRecord(migrate) ? migrate : services.find(([name]) => name === 'scheduler')?.[1];
  if (!app || typeof app.image !== 'string') throw new Error('the Compose file has no migrate or scheduler service');
  const appImage = app.image;
  const appEnvironment = environmentOf(app);

  const secrets = new Map<string, StackSecret>();
  const configs = new Map<string, StackConfigFile>();
  const secretOf = (variable: string, value: string): StackSecret => {
    const secret = { name: `${project}_${variable}_${shortHash(value)}`, variable, value };
    secrets.set(secret.name, secret);
    return secret;
  };

  const stackServices: Record<string, Service> = {};
  const appServices: string[] = [];
  for (const [name, service] of services) {
    const isApp = service.image === appImage;
    if (isApp) appServices.push(name);
    stackServices[name] = swarmService(name, service, {
      secretOf: isApp ? secretOf : null,
      configOf: (file) => {
        // Like the secrets: configs are immutable, a changed file is a new config.
        const base = path.basename(file).replace(/[^A-Za-z0-9_.-]/g, '_');
        const config = { name: `${project}_${base}_${shortHash(readConfigFile(file))}`, file };
        configs.set(config.name, config);
        return config;
      },
    });
  }

  const networks = isRecord(config.networks) ? config.networks : {};
  return {
    file: {
      version: '3.9',
      services: stackServices,
      networks: Object.fromEntries(
        Object.entries(networks).map(([name, network]) => [
          name,
          { driver: 'overlay', attachable: true, ...(isRecord(network) && network.internal ? { internal: true } : {}) },
        ]),
      ),
      volumes: isRecord(config.volumes) ? config.volumes : {},
      secrets: Object.fromEntries([...secrets.values()].map((secret) => [secret.name, { external: true }])),
      configs: Object.fromEntries([...configs.values()].map((config) => [config.name, { external: true }])),
    },
    secrets: [...secrets.values()],
    configs: [...configs.values()],
    appEnvironment,
    appImage,
    appNetworks: networkNames(app).map((network) => `${project}_${network}`),
    appServices,
  };
}

interface Converters {
  /** Null: keep the environment as it is (images that do not read /run/secrets). */
  secretOf: ((variable: string, value: string) => StackSecret) | null;
  configOf(file: string): StackConfigFile;
}

const DROPPED = new Set([
  'build',
  'container_name',
  'depends_on',
  'profiles',
  'restart',
  'security_opt',
  'tmpfs',
  'shm_size',
  'pids_limit',
  'volumes',
  'ports',
  'deploy',
  'environment',
  'networks',
]);

function swarmService(name: string, service: Service, convert: Converters): Service {
  const result: Service = Object.fromEntries(Object.entries(service).filter(([key]) => !DROPPED.has(key)));

  const environment = environmentOf(service);
  const secrets: Array<Record<string, unknown>> = [];
  if (convert.secretOf) {
    for (const variable of APP_SECRET_VARIABLES) {
      const value = environment[variable];
      delete environment[variable];
      if (!value) continue;
      const secret = convert.secretOf(variable, value);
      secrets.push({ source: secret.name, target: variable, uid: uidOf(service), gid: uidOf(service), mode: 0o400 });
    }
  }
  result.environment = environment;
  if (secrets.length) result.secrets = secrets;

  const mounts: unknown[] = [];
  const configs: Array<Record<string, unknown>> = [];
  for (const volume of Array.isArray(service.volumes) ? service.volumes : []) {
    const [source, target, mode] = typeof volume === 'string' ? volume.split(':') : [];
    if (source && target && path.isAbsolute(source) && mode === 'ro') {
      configs.push({ source: convert.configOf(source).name, target, mode: 0o444 });
    } else if (source && target && !path.isAbsolute(source)) {
      mounts.push(`${source}:${target}${mode === 'ro' ? ':ro' : ''}`);
    } else {
      mounts.push(volume);
    }
  }
  for (const tmpfs of Array.isArray(service.tmpfs) ? service.tmpfs : []) mounts.push(tmpfsMount(String(tmpfs)));
  if (typeof service.shm_size === 'string' || typeof service.shm_size === 'number') {
    mounts.push({ type: 'tmpfs', target: '/dev/shm', tmpfs: { size: bytes(String(service.shm_size)) } });
  }
  if (mounts.length) result.volumes = mounts;
  if (configs.length) result.configs = configs;

  const ports = (Array.isArray(service.ports) ? service.ports : []).map(hostModePort);
  if (ports.length) result.ports = ports;
  const networks = networkNames(service);
  if (networks.length) result.networks = networks;

  const deploy = isRecord(service.deploy) ? { ...service.deploy } : {};
  const resources = isRecord(deploy.resources) ? { ...deploy.resources } : {};
  const limits = isRecord(resources.limits) ? { ...resources.limits } : {};
  if (service.pids_limit !== undefined) limits.pids = Number(service.pids_limit);
  // docker-compose prints `cpus: 1.0` as a number; the stack format wants a string.
  if (typeof limits.cpus === 'number') limits.cpus = String(limits.cpus);
  if (Object.keys(limits).length) resources.limits = limits;
  const order = STOP_FIRST.has(name) ? 'stop-first' : 'start-first';
  result.deploy = {
    update_config: { parallelism: 1, order, failure_action: 'rollback', monitor: SWARM_MONITOR, delay: '5s' },
    rollback_config: { parallelism: 1, order, failure_action: 'pause', monitor: SWARM_MONITOR },
    ...deploy,
    ...(deploy.replicas !== undefined ? { replicas: Number(deploy.replicas) } : {}),
    ...(Object.keys(resources).length ? { resources } : {}),
    endpoint_mode: 'dnsrr',
    restart_policy: { condition: 'any', delay: '5s' },
    ...(PINNED.has(name) ? { placement: { constraints: ['node.role == manager'] } } : {}),
  };
  return result;
}

function environmentOf(service: Service): Record<string, string> {
  const environment = service.environment;
  if (Array.isArray(environment)) {
    return Object.fromEntries(
      environment.map((entry) => {
        const at = String(entry).indexOf('=');
        return at < 0 ? [String(entry), ''] : [String(entry).slice(0, at), String(entry).slice(at + 1)];
      }),
    );
  }
  return isRecord(environment)
    ? Object.fromEntries(
        Object.entries(environment).map(([key, value]) => [
          key,
          typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? String(value) : '',
        ]),
      )
    : {};
}

function networkNames(service: Service): string[] {
  if (Array.isArray(service.networks)) return service.networks.map(String);
  return isRecord(service.networks) ? Object.keys(service.networks) : [];
}

/** The secret files belong to the service's user (0400), who alone reads them. */
function uidOf(service: Service): string {
  return typeof service.user === 'string' && /^\d+/.test(service.user) ? service.user.split(':')[0]! : '0';
}

/** `/config:size=16m,uid=1000` → a tmpfs mount. Swarm has no uid option: a foreign uid gets a sticky, world-writable one. */
function tmpfsMount(spec: string): Record<string, unknown> {
  const [target, options = ''] = spec.split(/:(.*)/s);
  const option = Object.fromEntries(
    options
      .split(',')
      .filter(Boolean)
      .map((pair) => pair.split('=') as [string, string]),
  );
  return {
    type: 'tmpfs',
    target,
    tmpfs: {
      ...(option.size ? { size: bytes(option.size) } : {}),
      ...(option.uid && option.uid !== '0' ? { mode: 0o1777 } : {}),
    },
  };
}

/** `0.0.0.0:443:443/udp` (or the long form) → the long form, published on the node (host mode). */
function hostModePort(port: unknown): Record<string, unknown> {
  if (isRecord(port)) {
    const { host_ip: _hostIp, ...rest } = port;
    return { ...rest, mode: 'host' };
  }
  const [spec, protocol = 'tcp'] = String(port).split('/');
  const parts = spec!.split(':');
  const target = Number(parts.at(-1));
  const published = Number(parts.length >= 2 ? parts.at(-2) : parts.at(-1));
  return { target, published, protocol, mode: 'host' };
}

const UNITS: Record<string, number> = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

export function bytes(size: string): number {
  const match = /^(\d+)([bkmg])?b?$/i.exec(size.trim());
  if (!match) throw new Error(`not a size: ${size}`);
  return Number(match[1]) * UNITS[(match[2] ?? 'b').toLowerCase()]!;
}

function shortHash(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 12);
}
