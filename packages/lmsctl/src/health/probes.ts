import { statfs } from 'node:fs/promises';
import type { ChalkInstance } from 'chalk';
import type { Cluster, Redis } from 'ioredis';
import {
  connectClient,
  defaultMigrationsDir,
  describePostgresUrl,
  errorMessage,
  formatVersion,
  maskUrl,
  Migrator,
  queueNames,
} from '@lms/core';
import { formatDuration } from '@lms/core/duration';
import { createRedisClient, isRedisCluster } from '@lms/core/redis-client';
import { NO_DATABASE_GIVEN, type CommandContext } from '../context.js';
import { addressedIdentity, describeBackups, describeSources, selectBackups } from '../backup/inventory.js';
import type { BackupSelector } from '../backup/identity.js';
import { readDrillReports, routineDrillsOf } from '../backup/drill-reports.js';
import { formatBytes } from '../lib/progress.js';
import { describeRedisSource, queuesRedisSource, reachRedis } from '../queues/connection.js';
import { table } from '../output.js';
import { summarize, withQueues, type QueueOptions } from '../queues/inspect.js';
import { backupDirOf, drillDirOf } from '../backup/context.js';

/**
 * The health probes behind `status` and the `check` checklists: each looks at one part of the
 * system and says ok, warn, fail or manual, with what it found.
 */

export type ItemState = 'ok' | 'warn' | 'fail' | 'manual';

/** One line of `status` or a checklist: what was looked at, its state, and what was found. */
export interface StatusItem {
  name: string;
  state: ItemState;
  detail: string;
  data?: Record<string, unknown>;
}

export interface ProbeOptions extends QueueOptions {
  /** Where the API answers `/ready` (default http://127.0.0.1:PORT). */
  apiUrl?: string;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Runs a probe; whatever it throws becomes a failed item instead of ending the report. */
/** Runs one check; any error becomes a failed item with the (masked) reason, never a crash. */
export async function probe(name: string, work: () => Promise<StatusItem | StatusItem[]>): Promise<StatusItem[]> {
  try {
    const result = await work();
    return Array.isArray(result) ? result : [result];
  } catch (error) {
    return [{ name, state: 'fail', detail: maskUrl(errorMessage(error)) }];
  }
}

export async function probeApi(ctx: CommandContext, options: ProbeOptions): Promise<StatusItem[]> {
  const base = (options.apiUrl ?? `http://127.0.0.1:${ctx.config.PORT}`).replace(/\/+$/, '');
  const shown = `${maskUrl(base).replace(/\/+$/, '')}/ready`;
  return probe('api', async () => {
    let response: Response;
    try {
      response = await fetch(`${base}/ready`, { signal: AbortSignal.timeout(3000) });
    } catch (error) {
      return {
        name: 'api',
        state: 'fail',
        detail: `${shown} does not answer (${errorMessage(error)})`,
      };
    }
    const body = (await response.json().catch(() => ({}))) as { status?: string; checks?: Record<string, string> };
    const checks = Object.entries(body.checks ?? {})
      .map(([name, state]) => `${name} ${state}`)
      .join(', ');
    return {
      name: 'api',
      // `degraded` (Redis down) is 200 so load balancers keep the API in rotation; here it is worth a warning.
      state: !response.ok ? 'fail' : body.status === 'degraded' ? 'warn' : 'ok',
      detail: `${shown} answered ${response.status}${checks ? ` (${checks})` : ''}`,
      data: { status: response.status, checks: body.checks ?? null },
    };
  });
}

export async function probePostgres(ctx: CommandContext): Promise<StatusItem[]> {
  const url = ctx.databaseUrl;
  if (!url) return [{ name: 'postgresql', state: 'fail', detail: NO_DATABASE_GIVEN }];
  return probe('postgresql', async () => {
    const client = await connectClient(url, { applicationName: 'lmsctl status' });
    const items: StatusItem[] = [];
    try {
      const { rows } = await client.query<{ version: string; size: string; used: number; max: string }>(
        `SELECT current_setting('server_version') AS version, pg_database_size(current_database()) AS size,
                (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS used,
                current_setting('max_connections') AS max`,
      );
      const row = rows[0]!;
      // Client connections only: max_connections limits those, not the server's own background
      // processes (checkpointer, walwriter, autovacuum launcher…) that pg_stat_activity also lists.
      const share = row.used / Number(row.max);
      items.push({
        name: 'postgresql',
        state: share > 0.8 ? 'warn' : 'ok',
        detail: `PostgreSQL ${row.version.split(' ')[0]}, ${formatBytes(Number(row.size))}, ${row.used} of ${row.max} connections in use${share > 0.8 ? ' (over 80 %)' : ''}`,
        data: {
          version: row.version,
          sizeBytes: Number(row.size),
          connections: row.used,
          maxConnections: Number(row.max),
        },
      });
    } finally {
      await client.end();
    }
    items.push(...(await probeMigrations(url)));
    return items;
  });
}

async function probeMigrations(url: string): Promise<StatusItem[]> {
  return probe('migrations', async () => {
    const { entries, current } = await new Migrator({ connectionString: url, dir: defaultMigrationsDir }).status();
    const latest = entries.filter((entry) => entry.state !== 'missing').at(-1)?.version ?? null;
    const pending = entries.filter((entry) => entry.state === 'pending').length;
    const broken = entries.filter((entry) => entry.state === 'changed' || entry.state === 'missing');
    const at = (version: number | null) => (version === null ? 'none' : formatVersion(version));
    return {
      name: 'migrations',
      state: broken.length ? 'fail' : pending ? 'warn' : 'ok',
      detail: broken.length
        ? `${broken.map((entry) => `${entry.id} ${entry.state}`).join(', ')}: run \`lmsctl migrate validate\``
        : `at ${at(current)}, files at ${at(latest)}${pending ? `, ${pending} pending` : ''}`,
      data: { current, latest, pending },
    };
  });
}

function infoField(info: string, name: string): string | undefined {
  return new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
}

/** Memory, eviction policy and persistence of one Redis server. */
interface RedisServerFacts {
  version: string;
  used: number;
  max: number;
  policy: string;
  aof: boolean;
  /** null: CONFIG refused (often on managed Redis), so unknown from here. */
  rdb: boolean | null;
}

async function redisServerFacts(redis: Redis): Promise<RedisServerFacts> {
  const info = await redis.info();
  let rdb: boolean | null = null;
  try {
    const save = await redis.config('GET', 'save');
    rdb = Boolean(save[1]?.trim());
  } catch {
    // CONFIG is often disabled on managed Redis: persistence is then unknown from here.
  }
  return {
    version: infoField(info, 'redis_version') ?? '?',
    used: Number(infoField(info, 'used_memory') ?? 0),
    max: Number(infoField(info, 'maxmemory') ?? 0),
    policy: infoField(info, 'maxmemory_policy') ?? 'unknown',
    aof: infoField(info, 'aof_enabled') === '1',
    rdb,
  };
}

/** What an operator must fix on one server (or any master of a cluster) for the queues to be safe. */
function redisWarnings(facts: RedisServerFacts): string[] {
  const warnings: string[] = [];
  if (facts.max === 0) warnings.push('no maxmemory set');
  else if (facts.used / facts.max > 0.8) warnings.push('memory over 80 % of maxmemory');
  // BullMQ loses jobs if Redis evicts keys: only noeviction is safe for the queues.
  if (facts.policy !== 'noeviction')
    warnings.push(`eviction policy ${facts.policy} can drop queued jobs (use noeviction)`);
  if (facts.rdb === false && !facts.aof)
    warnings.push('persistence is off (no RDB snapshots, no AOF): a restart loses every queued job');
  return warnings;
}

const distinct = <T>(values: T[]): T[] => [...new Set(values)];

export async function probeRedis(ctx: CommandContext, options: QueueOptions): Promise<StatusItem[]> {
  const source = queuesRedisSource(ctx, options.redisUrl);
  return probe('redis', async () => {
    const target = await reachRedis(source);
    if (!target) return { name: 'redis', state: 'fail', detail: `${describeRedisSource(source)} does not answer` };
    const redis = createRedisClient(target, { lazyConnect: true, maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
    try {
      await redis.connect();
      if (isRedisCluster(redis)) return await clusterItem(redis);
      const facts = await redisServerFacts(redis);
      const warnings = redisWarnings(facts);
      const { version, used, max, policy, rdb, aof } = facts;
      return {
        name: 'redis',
        state: warnings.length ? 'warn' : 'ok',
        detail: `Redis ${version}, ${formatBytes(used)} used${max ? ` of ${formatBytes(max)}` : ''}, policy ${policy}, RDB ${rdb === null ? 'unknown' : rdb ? 'on' : 'off'}, AOF ${aof ? 'on' : 'off'}${warnings.length ? ` — ${warnings.join('; ')}` : ''}`,
        data: { usedMemory: used, maxMemory: max, policy, rdb, aof },
      };
    } finally {
      redis.disconnect();
    }
  });
}

/**
 * A Redis Cluster: its state, and each master's memory, policy and persistence (the queues live
 * on one master, the cache and rate limits on all). A state other than ok fails: some slots have
 * no master, and every key in them is out of reach.
 */
async function clusterItem(cluster: Cluster): Promise<StatusItem> {
  const masters = cluster.nodes('master');
  const clusterInfo = await masters[0]!.cluster('INFO');
  const clusterState = infoField(clusterInfo, 'cluster_state') ?? 'unknown';
  const nodes = await Promise.all(
    masters.map(async (node) => ({
      address: `${node.options.host}:${node.options.port}`,
      ...(await redisServerFacts(node)),
    })),
  );
  const warnings = distinct(
    nodes.flatMap((node) => redisWarnings(node).map((warning) => `${node.address}: ${warning}`)),
  );
  const used = nodes.reduce((sum, node) => sum + node.used, 0);
  const rdb = distinct(nodes.map((node) => (node.rdb === null ? 'unknown' : node.rdb ? 'on' : 'off'))).join('/');
  const aof = distinct(nodes.map((node) => (node.aof ? 'on' : 'off'))).join('/');
  const problems = [...(clusterState === 'ok' ? [] : [`cluster_state ${clusterState}`]), ...warnings];
  return {
    name: 'redis',
    state: clusterState !== 'ok' ? 'fail' : warnings.length ? 'warn' : 'ok',
    detail: `Redis Cluster ${distinct(nodes.map((node) => node.version)).join('/')}, ${masters.length} masters, state ${clusterState}, ${formatBytes(used)} used, policy ${distinct(nodes.map((node) => node.policy)).join('/')}, RDB ${rdb}, AOF ${aof}${problems.length ? ` — ${problems.join('; ')}` : ''}`,
    data: {
      cluster: { state: clusterState, masters: nodes.map((node) => node.address) },
      usedMemory: used,
      nodes,
    },
  };
}

export async function probeQueues(ctx: CommandContext, options: QueueOptions): Promise<StatusItem[]> {
  return probe('queues', async () =>
    withQueues(ctx, options, queueNames, async (queues) => {
      const summaries = await Promise.all(queues.map((queue) => summarize(queue)));
      return summaries.map((summary): StatusItem => {
        // Ready to run now (waiting, prioritized) apart from delayed: an idle queue still holds the
        // scheduler's next run as a delayed job, which is not a backlog.
        const ready = summary.counts.waiting + summary.counts.prioritized;
        const backlog = ready + summary.counts.delayed;
        const problems = [
          ...(summary.paused ? ['paused'] : []),
          ...(summary.counts.failed ? [`${summary.counts.failed} failed`] : []),
          ...(backlog && summary.workers === 0 ? ['no worker connected'] : []),
        ];
        return {
          name: `queue ${summary.name}`,
          state: problems.length ? 'warn' : 'ok',
          detail: `${ready} waiting, ${summary.counts.delayed} delayed, ${summary.counts.active} active, ${summary.counts.failed} failed, ${summary.workers} worker(s)${summary.oldestWaitingMs !== null ? `, oldest waiting ${formatDuration(summary.oldestWaitingMs)}` : ''}${problems.length ? ` — ${problems.join(', ')}` : ''}`,
          data: { ...summary.counts, ready, backlog, paused: summary.paused, workers: summary.workers },
        };
      });
    }),
  );
}

/**
 * Whose backups and drills `status` and `check` report: the database of DATABASE_URL (by its
 * server's identity when it answers), or every database when none is given.
 */
async function addressedSelector(ctx: CommandContext): Promise<{ selector: BackupSelector; whose: string }> {
  if (!ctx.databaseUrl) return { selector: { kind: 'all' }, whose: 'all databases' };
  const database = await addressedIdentity(ctx.databaseUrl, 'lmsctl status');
  return { selector: { kind: 'database', database }, whose: database.name };
}

export async function probeBackups(ctx: CommandContext, maxAgeMs = 26 * HOUR): Promise<StatusItem[]> {
  return probe('backup', async () => {
    const dir = backupDirOf(ctx);
    const { selector, whose } = await addressedSelector(ctx);
    const all = (await describeBackups(dir, drillDirOf(ctx))).filter((info) => info.complete);
    const newest = selectBackups(all, selector)[0];
    if (!newest) {
      const others = all.length ? ` (it holds backups of ${describeSources(all)})` : '';
      return {
        name: 'backup',
        state: 'fail',
        detail: `no backup of ${whose} in ${dir}${others}: run \`lmsctl backup\``,
      };
    }
    const stale = newest.ageMs > maxAgeMs;
    const verification =
      newest.verification === 'verified'
        ? 'verified'
        : newest.verification === 'failed'
          ? `verification FAILED: ${newest.verificationDetail}`
          : 'not verified: run `lmsctl backup verify latest`';
    return {
      name: 'backup',
      state: stale || newest.verification === 'failed' ? 'fail' : newest.verified ? 'ok' : 'warn',
      detail: `newest of ${whose}: ${newest.file}, ${formatDuration(newest.ageMs)} old${stale ? ` (over ${formatDuration(maxAgeMs)})` : ''}, ${verification}, ${formatBytes(newest.sizeBytes)}`,
      data: {
        file: newest.file,
        database: newest.database?.name ?? null,
        ageMs: newest.ageMs,
        verified: newest.verified,
        verification: newest.verification,
        sizeBytes: newest.sizeBytes,
      },
    };
  });
}

export async function probeDrill(ctx: CommandContext, maxAgeMs = 8 * DAY, required = false): Promise<StatusItem[]> {
  return probe('drill', async () => {
    const { selector, whose } = await addressedSelector(ctx);
    const reports = routineDrillsOf(await readDrillReports(drillDirOf(ctx)), selector);
    const newest = reports[0];
    if (!newest)
      return {
        name: 'drill',
        state: required ? 'fail' : 'warn',
        detail: `no restore drill of ${whose} has run: \`lmsctl drill\``,
      };
    const age = Date.now() - new Date(newest.finishedAt).getTime();
    const lastPass = reports.find((report) => report.verdict === 'pass');
    const passAge = lastPass ? Date.now() - new Date(lastPass.finishedAt).getTime() : null;
    const state: ItemState =
      newest.verdict !== 'pass' ? 'fail' : passAge !== null && passAge > maxAgeMs ? (required ? 'fail' : 'warn') : 'ok';
    return {
      name: 'drill',
      state,
      detail: `newest of ${whose}: ${newest.verdict} ${formatDuration(age)} ago (${newest.backup.file})${passAge === null ? ', none passed yet' : `, last pass ${formatDuration(passAge)} ago`}`,
      data: { verdict: newest.verdict, ageMs: age, lastPassAgeMs: passAge, report: newest.path },
    };
  });
}

/** Free space of a folder on this machine, warning under `minFreeRatio`. */
export async function probeDisk(name: string, folder: string, minFreeBytes = 0): Promise<StatusItem[]> {
  return probe(name, async () => {
    const info = await statfs(folder);
    const free = info.bavail * info.bsize;
    const total = info.blocks * info.bsize;
    const ratio = free / total;
    const state: ItemState = free < minFreeBytes || ratio < 0.05 ? 'fail' : ratio < 0.15 ? 'warn' : 'ok';
    return {
      name,
      state,
      detail: `${formatBytes(free)} free of ${formatBytes(total)} (${Math.round(ratio * 100)} %) at ${folder}`,
      data: { freeBytes: free, totalBytes: total },
    };
  });
}

const MARKS: Record<ItemState, (style: ChalkInstance) => string> = {
  ok: (style) => style.green('ok'),
  warn: (style) => style.yellow('warn'),
  fail: (style) => style.red('FAIL'),
  manual: (style) => style.cyan('manual'),
};

export function renderItems(items: StatusItem[], style: ChalkInstance): string {
  return table(
    ['', 'CHECK', 'FOUND'],
    items.map((item) => [MARKS[item.state](style), item.name, item.detail]),
    style,
  );
}

export async function databaseDiskItem(ctx: CommandContext): Promise<StatusItem[]> {
  const url = ctx.databaseUrl;
  if (!url) return [{ name: 'database disk', state: 'manual', detail: NO_DATABASE_GIVEN }];
  const { host } = describePostgresUrl(url);
  const local = host.startsWith('/') || ['localhost', '127.0.0.1', '::1'].includes(host);
  if (!local)
    return [
      { name: 'database disk', state: 'manual', detail: `check free disk of the server at ${host} in its monitoring` },
    ];
  return probe('database disk', async () => {
    const client = await connectClient(url, { applicationName: 'lmsctl check' });
    try {
      const { rows } = await client.query<{ dir: string }>(`SELECT current_setting('data_directory') AS dir`);
      return probeDisk('database disk', rows[0]!.dir);
    } catch {
      return {
        name: 'database disk',
        state: 'manual',
        detail: 'the server does not say where its data is (needs pg_read_all_settings)',
      };
    } finally {
      await client.end();
    }
  });
}
