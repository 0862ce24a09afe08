import { execa } from 'execa';
import { CliError, ExitCode } from '../errors.js';
import { lastLine } from '../lib/compose/compose-cli.js';

/**
 * Which API containers Caddy sends requests to, changed through Caddy's own CLI inside its
 * container (`caddy adapt`, `caddy reload`: the admin endpoint listens on localhost there).
 *
 * In steady state the Caddyfile names one upstream, `api:8000`, which Docker's DNS spreads over
 * the replicas. That cannot keep a rolling update gapless: a new container is in DNS before it is
 * ready, and a stopping one still receives requests on pooled connections. During a deploy Caddy
 * therefore gets the replicas by container name, only ready ones, and a container leaves that list
 * before it is stopped; a reload is graceful (requests in flight finish on the old configuration).
 * Afterwards the Caddyfile is loaded again.
 */
export interface CaddyRouting {
  /** Sends requests to exactly these API containers (port 8000). */
  routeTo(containers: string[]): Promise<void>;
  /** Back to the Caddyfile as mounted. */
  restore(): Promise<void>;
}

const CADDYFILE = '/etc/caddy/Caddyfile';
const DEPLOY_CONFIG = '/tmp/lms-deploy-routing.json';

export function caddyRouting(caddyContainer: string, env: NodeJS.ProcessEnv): CaddyRouting {
  const exec = async (args: string[], input?: string) => {
    const result = await execa('docker', ['exec', ...(input === undefined ? [] : ['-i']), caddyContainer, ...args], {
      env,
      reject: false,
      ...(input === undefined ? { stdin: 'ignore' as const } : { input }),
    });
    if (result.exitCode !== 0) {
      throw new CliError(
        ExitCode.failed,
        `caddy in ${caddyContainer}: \`${args.join(' ')}\` failed: ${lastLine(result.stderr) || `exit code ${result.exitCode}`}`,
      );
    }
    return result.stdout;
  };
  return {
    async routeTo(containers) {
      if (containers.length === 0) throw new Error('routeTo needs at least one API container');
      const config = JSON.parse(
        await exec(['caddy', 'adapt', '--config', CADDYFILE, '--adapter', 'caddyfile']),
      ) as unknown;
      const proxies = reverseProxies(config);
      if (proxies.length === 0)
        throw new CliError(ExitCode.failed, `the Caddyfile of ${caddyContainer} has no reverse_proxy`);
      for (const proxy of proxies) proxy.upstreams = containers.map((container) => ({ dial: `${container}:8000` }));
      await exec(['sh', '-c', `cat > ${DEPLOY_CONFIG}`], JSON.stringify(config));
      // No --adapter: a .json file is Caddy's own configuration.
      await exec(['caddy', 'reload', '--config', DEPLOY_CONFIG]);
    },
    async restore() {
      await exec(['caddy', 'reload', '--config', CADDYFILE, '--adapter', 'caddyfile']);
    },
  };
}

/** Every reverse_proxy handler in Caddy's JSON configuration, wherever routes nest them. */
function reverseProxies(node: unknown): Array<{ upstreams?: unknown }> {
  if (Array.isArray(node)) return node.flatMap(reverseProxies);
  if (typeof node !== 'object' || node === null) return [];
  const record = node as Record<string, unknown>;
  const own = record.handler === 'reverse_proxy' ? [record as { upstreams?: unknown }] : [];
  return [...own, ...Object.values(record).flatMap(reverseProxies)];
}
