import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { asList, asMap, asText, repositoryRoot, type YamlMap } from './files.js';

/**
 * The pieces of a real monitoring stack on 127.0.0.1 for the tests: Debian's Prometheus,
 * Alertmanager and exporters, the project's API and worker as child processes, a webhook
 * receiver in place of the notification channels, and the project's configuration with only
 * addresses (and, for the test's speed, intervals) rewritten.
 */

/** A child process this test started: its output kept for the failure message, stopped by its own pid. */
export interface Daemon {
  name: string;
  child: ChildProcess;
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it exited. */
  stop(graceMs?: number): Promise<void>;
}

export function startDaemon(name: string, command: string, args: string[], env: NodeJS.ProcessEnv = {}): Daemon {
  const child = spawn(command, args, {
    cwd: repositoryRoot,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  // The last 20 kB are enough to say why it failed; a chatty daemon must not fill the memory.
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-20_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.on('error', (error) => keep(Buffer.from(`\n${name}: ${error.message}\n`)));
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  return {
    name,
    child,
    output: () => output,
    async stop(graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** One of the project's TypeScript entry points (`packages/api/src/main.ts`), as `pnpm start` runs it. */
export function startNodeEntry(name: string, entry: string, args: string[], env: Record<string, string>): Daemon {
  return startDaemon(
    name,
    process.execPath,
    ['--conditions=lms-source', '--import', tsx, path.join(repositoryRoot, entry), ...args],
    env,
  );
}

/** Resolves once `url` answers 2xx; fails with the daemon's output if it exits or takes longer than `timeoutMs`. */
export async function waitForHttp(url: string, daemon: Daemon, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (daemon.child.exitCode !== null || daemon.child.signalCode !== null) {
      throw new Error(
        `${daemon.name} exited (${daemon.child.exitCode ?? daemon.child.signalCode}):\n${daemon.output()}`,
      );
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`${daemon.name} did not answer ${url} in time:\n${daemon.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Polls `probe` until it returns a value (not undefined), or fails with `what` after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined> | T | undefined,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not within ${timeoutMs / 1000} s${last instanceof Error ? ` (${last.message})` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/** The scrape address of every job of prometheus.yml, by job name. */
export type JobTargets = Record<string, string>;

/**
 * The project's prometheus.yml for the test: every job keeps its settings (metrics path, …) but
 * scrapes the test's process instead of the Compose service (static targets in place of DNS
 * service discovery), the rule files are the project's own (absolute paths), alerts go to the
 * test's Alertmanager, and the intervals are seconds so a 5-minute rule sees data at once: rules
 * every second, scrapes every two (postgres_exporter takes a second to answer while PostgreSQL
 * refuses it; a shorter scrape timeout would lose its pg_up 0).
 * A job the test runs no process for fails here, so "every target up" covers every job.
 */
export function testPrometheusConfig(
  project: YamlMap,
  options: { targets: JobTargets; alertmanager: string; configDir: string },
): YamlMap {
  const names: string[] = [];
  const jobs = asList(project.scrape_configs, 'scrape_configs').map((entry) => {
    const job = { ...asMap(entry, 'scrape_config') };
    const name = asText(job.job_name);
    names.push(name);
    const target = options.targets[name];
    if (!target) throw new Error(`prometheus.yml scrapes job "${name}", for which the test runs nothing`);
    delete job.dns_sd_configs;
    delete job.static_configs;
    return { ...job, static_configs: [{ targets: [target] }] };
  });
  const unknown = Object.keys(options.targets).filter((name) => !names.includes(name));
  if (unknown.length) throw new Error(`prometheus.yml has no job ${unknown.join(', ')}`);
  return {
    ...project,
    global: {
      ...asMap(project.global, 'global'),
      scrape_interval: '2s',
      scrape_timeout: '2s',
      evaluation_interval: '1s',
    },
    rule_files: asList(project.rule_files, 'rule_files').map((file) => path.resolve(options.configDir, asText(file))),
    alerting: { alertmanagers: [{ static_configs: [{ targets: [options.alertmanager] }] }] },
    scrape_configs: jobs,
  };
}

/** Every route of the tree, the root included. */
function routesOf(route: YamlMap): YamlMap[] {
  return [route, ...asList(route.routes, 'routes').flatMap((child) => routesOf(asMap(child, 'route')))];
}

/**
 * The project's alertmanager.yml for the test: the routing tree and the inhibition rules as they
 * are, every receiver a webhook to `webhookBase/<receiver name>` (no e-mail, Slack or PagerDuty
 * leaves the machine; the path says which receiver the route chose), the global settings of
 * those channels dropped, and the grouping waits one second.
 */
export function testAlertmanagerConfig(project: YamlMap, webhookBase: string): YamlMap {
  const route = structuredClone(asMap(project.route, 'route'));
  for (const each of routesOf(route)) {
    if (each.group_wait !== undefined || each === route) each.group_wait = '1s';
    if (each.group_interval !== undefined || each === route) each.group_interval = '1s';
  }
  const global = asMap(project.global, 'global');
  return {
    global: { resolve_timeout: global.resolve_timeout ?? '5m' },
    route,
    inhibit_rules: project.inhibit_rules,
    receivers: asList(project.receivers, 'receivers').map((entry) => {
      const name = asText(asMap(entry, 'receiver').name);
      return { name, webhook_configs: [{ url: `${webhookBase}/${name}`, send_resolved: false }] };
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// The notification channels

export interface Notification {
  receiver: string;
  status: string;
  alerts: Array<{ status: string; labels: Record<string, string>; annotations: Record<string, string> }>;
}

export interface WebhookReceiver {
  url: string;
  notifications: Notification[];
  close(): Promise<void>;
}

/** An HTTP server on 127.0.0.1 that keeps what Alertmanager's webhooks post to it. */
export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const notifications: Notification[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    req.on('end', () => {
      try {
        notifications.push(JSON.parse(body) as Notification);
        res.writeHead(200).end();
      } catch {
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    notifications,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

// ---------------------------------------------------------------------------------------------
// The Prometheus HTTP API

export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** An instant query: its samples, or an error with Prometheus's own message. */
export async function instantQuery(base: string, expr: string): Promise<Sample[]> {
  const response = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(expr)}`, {
    signal: AbortSignal.timeout(10_000),
  });
  const body = (await response.json()) as {
    status: string;
    error?: string;
    data?: { resultType: string; result: Sample[] | [number, string] };
  };
  if (body.status !== 'success') throw new Error(`${expr}: ${body.error ?? response.status}`);
  const { resultType, result } = body.data!;
  // A scalar (time() - …) is one sample without labels.
  return resultType === 'scalar' ? [{ metric: {}, value: result as [number, string] }] : (result as Sample[]);
}

export interface RuleState {
  name: string;
  state: string;
  health: string;
  lastError?: string;
  labels: Record<string, string>;
  lastEvaluation: string;
}

export async function alertingRules(base: string): Promise<RuleState[]> {
  const body = (await (await fetch(`${base}/api/v1/rules?type=alert`)).json()) as {
    data: { groups: Array<{ rules: RuleState[] }> };
  };
  return body.data.groups.flatMap((group) => group.rules);
}

/** The state of the rule named `alert` with `severity` (ApiDown has one rule per severity). */
export async function ruleState(base: string, alert: string, severity?: string): Promise<string> {
  const rules = (await alertingRules(base)).filter(
    (rule) => rule.name === alert && (severity === undefined || rule.labels.severity === severity),
  );
  if (rules.length !== 1) throw new Error(`${rules.length} rules named ${alert} ${severity ?? ''}`);
  return rules[0]!.state;
}

export async function activeTargets(
  base: string,
): Promise<Array<{ labels: { job: string; instance: string }; health: string; lastError: string }>> {
  const body = (await (await fetch(`${base}/api/v1/targets?state=active`)).json()) as {
    data: { activeTargets: Array<{ labels: { job: string; instance: string }; health: string; lastError: string }> };
  };
  return body.data.activeTargets;
}
