import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  containerOf,
  containersOf,
  docker,
  eventually,
  freePort,
  leftovers,
  lmsctl,
  Http2Client,
  projectName,
  removeProject,
  repoRoot,
  createUserInStack,
} from './harness.js';
import { findBuildKitCli } from '../packages/lmsctl/src/lib/compose/stack-images.js';

/**
 * The production stack with its monitoring (`--env observability`: docker-compose.prod.yml +
 * docker-compose.observability.yml) as an operator runs it, behind Caddy with its internal CA
 * (APP_DOMAIN=lms.localhost). One stack for the whole file: bringing it up is the slow part.
 * Grafana is left out (no image of it can run here); everything else runs.
 */
const project = projectName('prod');
const lmsImage = `${project}:latest`;
const failingReads = `${project}:failing-reads`;
const caddyImage = `${project}-caddy:latest`;
const domain = 'lms.localhost';
const services = [
  'caddy',
  'api',
  'worker',
  'scheduler',
  'migrate',
  'postgres',
  'redis',
  'prometheus',
  'alertmanager',
  'node-exporter',
  'postgres-exporter',
  'redis-exporter',
];
let work: string;
let env: Record<string, string>;
let httpsPort: number;
let prometheusUrl: string;
let rootCertificate: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lms-e2e-prod-'));
  const [http, https, prometheus, alertmanager, grafana] = await Promise.all(Array.from({ length: 5 }, freePort));
  httpsPort = https!;
  prometheusUrl = `http://127.0.0.1:${prometheus}`;
  // Alertmanager's secret files: unused channels take empty files, readable by its user (nobody).
  const secrets: Record<string, string> = {};
  for (const name of [
    'alertmanager_smtp_password',
    'alertmanager_slack_webhook_url',
    'alertmanager_pagerduty_routing_key',
  ]) {
    const file = path.join(work, name);
    await writeFile(file, '');
    await chmod(file, 0o444);
    secrets[`${name.toUpperCase()}_FILE`] = file;
  }
  // node_exporter mounts / with rslave propagation, which needs / to be a shared mount: it is
  // not on these machines. A site override (what --override is for) mounts it without.
  const override = path.join(work, 'no-rslave.yml');
  await writeFile(override, 'services:\n  node-exporter:\n    volumes:\n      - /:/host/root:ro\n');
  const envFile = path.join(work, 'prod.env');
  await writeFile(
    envFile,
    Object.entries({
      SECRET_KEY: 'e2e-only-not-a-secret-'.padEnd(80, '0'),
      WEBHOOK_SECRET_KEY: '1'.repeat(64),
      POSTGRES_PASSWORD: '0123456789abcdef0123456789abcdef',
      REDIS_PASSWORD: 'fedcba9876543210fedcba9876543210',
      // Nothing is delivered: the address does not resolve inside the stack; e-mail jobs retry.
      SMTP_URL: 'smtp://mail.invalid:25',
      APP_DOMAIN: domain,
      LETSENCRYPT_EMAIL: 'ops@example.com',
      GRAFANA_ADMIN_PASSWORD: 'not-a-secret',
      PUBLISH_ADDRESS: '127.0.0.1',
      HTTP_PORT: String(http),
      HTTPS_PORT: String(https),
      PROMETHEUS_PORT: String(prometheus),
      ALERTMANAGER_PORT: String(alertmanager),
      GRAFANA_PORT: String(grafana),
      LMS_IMAGE: lmsImage,
      CADDY_IMAGE: caddyImage,
      ...secrets,
    })
      .map(([name, value]) => `${name}=${value}`)
      .join('\n'),
  );
  env = {};
  stackArgs.push('--env', 'observability', '--project-name', project, '--env-file', envFile, '--override', override);
  // The same stack as `lmsctl deploy` addresses it: prod plus the monitoring file as an override.
  deployArgs.push(
    '--env',
    'prod',
    '--project-name',
    project,
    '--env-file',
    envFile,
    '--override',
    path.join(repoRoot, 'compose', 'docker-compose.observability.yml'),
    '--override',
    override,
  );
});

const deployArgs: string[] = [];

const stackArgs: string[] = [];

afterAll(async () => {
  await removeProject(project);
  await docker(['rmi', failingReads, lmsImage, caddyImage], { reject: false });
  await rm(work, { recursive: true, force: true });
});

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** A request through Caddy over HTTPS, trusting only its internal CA's root (curl, as a client outside would). */
async function https(
  method: string,
  urlPath: string,
  options: { json?: unknown; token?: string; file?: string; http1?: boolean } = {},
) {
  const headersFile = path.join(work, 'headers.txt');
  const bodyFile = path.join(work, 'body.txt');
  const result = await execa(
    'curl',
    [
      '-sS',
      '--max-time',
      '30',
      '--cacert',
      rootCertificate,
      '--resolve',
      `${domain}:${httpsPort}:127.0.0.1`,
      '-X',
      method,
      '-D',
      headersFile,
      '-o',
      bodyFile,
      '-w',
      '%{http_code}',
      ...(options.http1 ? ['--http1.1'] : []),
      ...(options.token ? ['-H', `authorization: Bearer ${options.token}`] : []),
      ...(options.json !== undefined
        ? ['-H', 'content-type: application/json', '--data-binary', JSON.stringify(options.json)]
        : []),
      ...(options.file ? ['-H', 'content-type: application/json', '--data-binary', `@${options.file}`] : []),
      `https://${domain}:${httpsPort}${urlPath}`,
    ],
    { reject: false },
  );
  if (result.exitCode !== 0) throw new Error(`curl ${method} ${urlPath}: ${result.stderr}`);
  const headers: Record<string, string> = {};
  for (const line of (await readFile(headersFile, 'utf8')).split('\r\n').slice(1)) {
    const at = line.indexOf(':');
    if (at > 0) headers[line.slice(0, at).toLowerCase()] = line.slice(at + 1).trim();
  }
  return { status: Number(result.stdout), headers, body: await readFile(bodyFile, 'utf8') } satisfies Answer;
}

const json = <T>(answer: Answer) => JSON.parse(answer.body) as T;

async function inspect<T>(container: string, format: string): Promise<T> {
  return JSON.parse((await docker(['inspect', '-f', `{{json ${format}}}`, container])).stdout) as T;
}

describe('the production stack behind Caddy, with its monitoring', () => {
  it('lmsctl up --wait builds the images and exits 0 with two API replicas; migrate exited 0', async () => {
    const up = await lmsctl(['up', ...stackArgs, '--wait', '--timeout', '15m', '--json', ...services], env);
    expect(up.exitCode, up.stderr.slice(-4000)).toBe(0);
    const result = JSON.parse(up.stdout) as {
      built: string[];
      services: Array<{ service: string; state: string; health: string | null; exitCode: number | null }>;
    };
    expect(result.built.sort()).toEqual([lmsImage, caddyImage].sort());
    expect(result.services.filter((service) => service.service === 'api')).toHaveLength(2);
    for (const service of result.services) {
      if (service.service === 'migrate') expect([service.state, service.exitCode]).toEqual(['exited', 0]);
      else expect([service.service, service.state, service.health]).toEqual([service.service, 'running', 'healthy']);
    }
    rootCertificate = path.join(work, 'root.crt');
    const root = await docker([
      'exec',
      await containerOf(project, 'caddy'),
      'cat',
      '/data/caddy/pki/authorities/local/root.crt',
    ]);
    await writeFile(rootCertificate, root.stdout);
  });

  it('migrate ran once, and finished before api, worker and scheduler started', async () => {
    const [migrate, ...others] = await containersOf(project, 'migrate');
    expect(others).toEqual([]);
    const finished = Date.parse(await inspect<string>(migrate!, '.State.FinishedAt'));
    expect(await inspect<number>(migrate!, '.RestartCount')).toBe(0);
    for (const service of ['api', 'worker', 'scheduler']) {
      for (const container of await containersOf(project, service)) {
        const started = Date.parse(await inspect<string>(container, '.State.StartedAt'));
        expect(started, `${container} started after migrate finished`).toBeGreaterThan(finished);
      }
    }
  });

  it('every service runs read-only, without capabilities, without new privileges, as a non-root user', async () => {
    for (const service of services) {
      for (const container of await containersOf(project, service)) {
        const host = await inspect<{ ReadonlyRootfs: boolean; CapDrop: string[] | null; SecurityOpt: string[] | null }>(
          container,
          '.HostConfig',
        );
        expect(host.ReadonlyRootfs, container).toBe(true);
        expect(host.CapDrop ?? [], container).toContain('ALL');
        expect(host.SecurityOpt ?? [], container).toContain('no-new-privileges:true');
        const user = await inspect<string>(container, '.Config.User');
        expect(['', 'root', '0', '0:0'], `${container} runs as ${user}`).not.toContain(user);
      }
    }
  });

  it('a user journey over HTTPS through Caddy: register, log in, create and publish a course, enrol, complete a lesson', async () => {
    const password = 'an-e2e-password-long-enough';
    // The first instructor comes from lmsctl inside the stack, as an operator would make one.
    await createUserInStack(project, {
      email: 'teacher@example.com',
      name: 'Teacher',
      role: 'instructor',
      password,
    });
    const teacher = json<{ accessToken: string }>(
      await https('POST', '/api/v1/auth/login', { json: { email: 'teacher@example.com', password } }),
    ).accessToken;
    const course = await https('POST', '/api/v1/courses', {
      token: teacher,
      json: { title: 'Running the stack', description: 'end to end' },
    });
    expect(course.status, course.body).toBe(201);
    const courseId = json<{ id: string }>(course).id;
    const lesson = await https('POST', `/api/v1/courses/${courseId}/lessons`, {
      token: teacher,
      json: { title: 'One', body: 'the only lesson' },
    });
    expect(lesson.status, lesson.body).toBe(201);
    const lessonId = json<{ id: string }>(lesson).id;
    const published = await https('POST', `/api/v1/courses/${courseId}/publish`, { token: teacher });
    expect(published.status, published.body).toBe(200);

    const register = await https('POST', '/api/v1/auth/register', {
      json: { email: 'learner@example.com', password, name: 'Learner' },
    });
    expect(register.status, register.body).toBe(201);
    const login = await https('POST', '/api/v1/auth/login', { json: { email: 'learner@example.com', password } });
    expect(login.status, login.body).toBe(200);
    const learner = json<{ accessToken: string }>(login).accessToken;
    const enrol = await https('POST', `/api/v1/courses/${courseId}/enroll`, { token: learner });
    expect(enrol.status, enrol.body).toBe(201);
    const enrolmentId = json<{ id: string }>(enrol).id;
    const complete = await https('POST', `/api/v1/enrollments/${enrolmentId}/lessons/${lessonId}/complete`, {
      token: learner,
    });
    expect(complete.status, complete.body).toBe(200);
    // The worker recomputes progress from the queue: the whole pipeline ran.
    await eventually('progress 100 after the worker recomputed it', async () => {
      const mine = json<{ items: Array<{ id: string; progress: number }> }>(
        await https('GET', '/api/v1/enrollments', { token: learner }),
      );
      return mine.items.find((item) => item.id === enrolmentId)?.progress === 100 ? true : undefined;
    });
  });

  it('answers with the API security headers, HSTS from Caddy and no Server header; /metrics is 404 from outside', async () => {
    const answer = await https('GET', '/api/v1/courses');
    expect(answer.status).toBe(200);
    expect(answer.headers['x-content-type-options']).toBe('nosniff');
    expect(answer.headers['x-frame-options']).toBe('DENY');
    expect(answer.headers['x-xss-protection']).toBe('0');
    expect(answer.headers['referrer-policy']).toBe('no-referrer');
    expect(answer.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    expect(answer.headers.server).toBeUndefined();
    expect((await https('GET', '/metrics')).status).toBe(404);
  });

  it('Caddy starts clean: no permission errors on its tmpfs, no error but the access log of refused requests', async () => {
    const logs = await docker(['logs', await containerOf(project, 'caddy')]);
    const lines = `${logs.stdout}\n${logs.stderr}`.split('\n').filter(Boolean);
    expect(lines.filter((line) => line.includes('permission denied'))).toEqual([]);
    // Caddy logs 4xx/5xx answers (the 404s and 413s above) at error level in its access log.
    const errors = lines.filter(
      (line) => line.includes('"level":"error"') && !line.includes('"logger":"http.log.access'),
    );
    expect(errors).toEqual([]);
  });

  it('an 11 MB POST gets 413 from Caddy, three times, and the site stays up', async () => {
    const big = path.join(work, 'big.json');
    await writeFile(big, `{"title":"${'x'.repeat(11 * 1024 * 1024)}"}`);
    // Over HTTP/1.1: Caddy answers before reading the upload and then ends the stream; over
    // HTTP/2 that end is a RST_STREAM racing the answer's DATA frame, and curl 7.88 then
    // sometimes reports the 413 with its body cut off (exit 18) — seen 3 times in 30 here,
    // never over HTTP/1.1, where Go's server half-closes and lets the answer arrive.
    for (let attempt = 0; attempt < 3; attempt += 1) {
      expect((await https('POST', '/api/v1/courses', { file: big, http1: true })).status).toBe(413);
    }
    expect((await https('GET', '/api/v1/courses')).status).toBe(200);
  });

  it("the scheduler's lmsctl backs up and drills inside the stack and writes their metrics; Prometheus scrapes every target and loads every rule", async () => {
    const scheduler = await containerOf(project, 'scheduler');
    const backup = await docker(['exec', scheduler, 'lmsctl', 'backup'], { reject: false });
    expect(backup.exitCode, backup.stderr).toBe(0);
    const drill = await docker(['exec', scheduler, 'lmsctl', 'drill'], { reject: false });
    expect(drill.exitCode, drill.stderr).toBe(0);
    const written = await docker([
      'exec',
      scheduler,
      'cat',
      '/app/metrics/lms_backup.prom',
      '/app/metrics/lms_drill.prom',
    ]);
    expect(written.stdout).toMatch(/^lms_backup_last_success_timestamp_seconds\b/m);
    expect(written.stdout).toMatch(/^lms_drill_last_success_timestamp_seconds\b/m);

    const prometheus = async <T>(apiPath: string) => {
      const answer = await fetch(`${prometheusUrl}${apiPath}`);
      if (!answer.ok) throw new Error(`${apiPath} answered ${answer.status}`);
      return ((await answer.json()) as { data: T }).data;
    };
    const targets = await eventually(
      'every Prometheus target up',
      async () => {
        const data = await prometheus<{
          activeTargets: Array<{ labels: { job: string; instance: string }; health: string; lastError: string }>;
        }>('/api/v1/targets');
        const down = data.activeTargets.filter((target) => target.health !== 'up');
        if (down.length) {
          throw new Error(
            down
              .map((target) => `${target.labels.job} ${target.labels.instance}: ${target.health} ${target.lastError}`)
              .join('; '),
          );
        }
        return data.activeTargets;
      },
      { timeoutMs: 180_000, intervalMs: 3000 },
    );
    // The API replicas are found by DNS: one target each.
    expect(targets.filter((target) => target.labels.job === 'api')).toHaveLength(2);
    expect(new Set(targets.map((target) => target.labels.job))).toEqual(
      new Set(['prometheus', 'alertmanager', 'api', 'worker', 'postgres', 'redis', 'node']),
    );

    const groups = await eventually(
      'every rule evaluated without error',
      async () => {
        const data = await prometheus<{
          groups: Array<{ name: string; rules: Array<{ name: string; health: string; lastError?: string }> }>;
        }>('/api/v1/rules');
        const bad = data.groups.flatMap((group) => group.rules.filter((rule) => rule.health !== 'ok'));
        if (bad.length)
          throw new Error(bad.map((rule) => `${rule.name}: ${rule.health} ${rule.lastError ?? ''}`).join('; '));
        return data.groups;
      },
      { timeoutMs: 180_000, intervalMs: 3000 },
    );
    expect(groups.flatMap((group) => group.rules).length).toBeGreaterThan(0);

    await eventually(
      'lms_backup_* scraped through node_exporter',
      async () => {
        const data = await prometheus<{ result: unknown[] }>(
          `/api/v1/query?query=${encodeURIComponent('lms_backup_last_success_timestamp_seconds')}`,
        );
        return data.result.length > 0 ? true : undefined;
      },
      { timeoutMs: 180_000, intervalMs: 3000 },
    );
  });

  it('lmsctl deploy of an image that answers 5xx on reads is rolled back by the error-rate gate of its watch window', async () => {
    // A release whose read-replica role may not read the tables: /ready (the primary) answers
    // and the replica answers its lag check, so the rollout completes and no fallback to the
    // primary hides it (that is for a replica that is down or behind); what is read from the
    // replica fails with "permission denied". Only the traffic shows it.
    await docker([
      'exec',
      await containerOf(project, 'postgres'),
      'psql',
      '-U',
      'lms',
      '-d',
      'lms',
      '-qc',
      "CREATE ROLE lms_e2e_noread LOGIN PASSWORD 'noread-e2e'",
    ]);
    const builder = await findBuildKitCli(process.env);
    const dockerfile = path.join(work, 'failing-reads.Dockerfile');
    await writeFile(
      dockerfile,
      `FROM ${lmsImage}\nUSER root\nRUN sed -i 's#exec node "$app_dir/api/dist/main.js"#DATABASE_READ_URL=postgres://lms_e2e_noread:noread-e2e@postgres:5432/lms exec node "$app_dir/api/dist/main.js"#' /usr/local/bin/lms-entrypoint && grep -q lms_e2e_noread /usr/local/bin/lms-entrypoint\nUSER 1000:1000\n`,
    );
    const build = await execa(
      builder.argv[0]!,
      [...builder.argv.slice(1), '-f', dockerfile, '-t', failingReads, work],
      {
        env: builder.env,
        reject: false,
      },
    );
    expect(build.exitCode, build.stderr).toBe(0);

    // A learner's own enrolments: read from the read pool on every request (the public catalogue
    // would come from the cache).
    const login = await https('POST', '/api/v1/auth/login', {
      json: { email: 'learner@example.com', password: 'an-e2e-password-long-enough' },
    });
    expect(login.status, login.body).toBe(200);
    const token = json<{ accessToken: string }>(login).accessToken;
    const client = new Http2Client({ host: domain, port: httpsPort, ca: await readFile(rootCertificate, 'utf8') });
    let running = true;
    const statuses: number[] = [];
    const load = (async () => {
      while (running) {
        statuses.push(
          (await client.request('GET', '/api/v1/enrollments', { token }).catch(() => ({ status: 0 }))).status,
        );
        // 4 per second: under the per-user rate limit (300 a minute), so every answer is the API's own.
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    })();
    try {
      const run = await lmsctl(['deploy', '--image', failingReads, '--skip-staging', '--watch', '3m', ...deployArgs], {
        LMS_DEPLOY_DIR: path.join(work, 'deploys'),
      });
      expect(run.exitCode, run.stderr.slice(-3000)).toBe(1);
      expect(run.stderr).toContain(
        `error: deploy of ${failingReads} rolled back to ${lmsImage}: the 5xx share of user requests rose to`,
      );
    } finally {
      running = false;
      await load;
      client.close();
    }
    // The failing release served (that is what the gate saw), and the stack is back on the image before.
    expect(statuses.filter((status) => status >= 500).length).toBeGreaterThan(0);
    for (const container of await containersOf(project, 'api')) {
      expect(await inspect<string>(container, '.Config.Image')).toBe(lmsImage);
    }
    expect(statuses.filter((status) => status === 429)).toEqual([]);
    expect((await https('GET', '/api/v1/courses')).status).toBe(200);
  });

  it('with Redis stopped, reads keep answering 200 through Caddy (/ready says degraded, not 503)', async () => {
    const redis = await containerOf(project, 'redis');
    await docker(['stop', redis]);
    try {
      const ready = await eventually('the API degraded, not down', async () => {
        const answer = await https('GET', '/ready');
        return answer.status === 200 && json<{ status: string }>(answer).status === 'degraded' ? answer : undefined;
      });
      expect(ready.status).toBe(200);
      // Longer than Caddy's active health interval (10 s): every answer still comes from the API.
      for (let check = 0; check < 6; check += 1) {
        const answer = await https('GET', '/api/v1/courses');
        expect(answer.status, answer.body).toBe(200);
        await new Promise((resolve) => setTimeout(resolve, 3000));
      }
    } finally {
      await docker(['start', redis]);
    }
    await eventually('the API ready again', async () => {
      const answer = await https('GET', '/ready');
      return answer.status === 200 && json<{ status: string }>(answer).status === 'ready' ? true : undefined;
    });
  });

  it('lmsctl down --volumes --yes leaves no container, network or volume of the project', async () => {
    const down = await lmsctl(['down', ...stackArgs, '--volumes', '--yes'], env);
    expect(down.exitCode, down.stderr).toBe(0);
    expect(await leftovers(project)).toEqual({ containers: [], volumes: [], networks: [] });
  });
});
