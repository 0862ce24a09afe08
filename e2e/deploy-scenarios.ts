import https from 'node:https';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findBuildKitCli } from '../packages/lmsctl/src/lib/compose/stack-images.js';
import {
  containerOf,
  containersOf,
  docker,
  freePort,
  Http2Client,
  httpsRequest,
  leftovers,
  lmsctl,
  projectName,
  removeProject,
  createUserInStack,
  eventually,
} from './harness.js';

/**
 * `lmsctl deploy` on the production stack under a steady load of reads and writes through Caddy:
 * a new image, an image whose API never becomes ready (rolled back), and `deploy rollback` — none
 * of them may fail a request. The same scenarios on one host with Compose (lmsctl replaces the
 * containers) and on a single-node Swarm (the engine rolls the services): deploy.e2e.ts and
 * deploy-swarm.e2e.ts.
 */
export function describeDeploys(orchestrator: 'compose' | 'swarm'): void {
  const onSwarm = orchestrator === 'swarm';
  const project = projectName(onSwarm ? 'swarm' : 'deploy');
  const v1 = `${project}:v1`;
  const v2 = `${project}:v2`;
  const broken = `${project}:broken`;
  const caddyImage = `${project}-caddy:latest`;
  const domain = 'lms.localhost';
  let work: string;
  let stackArgs: string[];
  /** What `up` adds: on Swarm, the orchestrator (deploy and down find the stack by themselves). */
  let upArgs: string[];
  let deployDir: string;
  let site: { host: string; port: number; ca: string; agent: https.Agent };
  let client: Http2Client;
  let teacherToken: string;
  /** A learner enrolled in a course with many lessons: each completion queues its own progress job. */
  const learner = { token: '', enrolmentId: '', lessons: [] as string[], completed: [] as string[] };
  /** Whether this test made the engine a Swarm manager (and so leaves the Swarm afterwards). */
  let initializedSwarm = false;

  beforeAll(async () => {
    if (onSwarm) {
      const state = (await docker(['info', '--format', '{{.Swarm.LocalNodeState}}'])).stdout.trim();
      if (state !== 'active') {
        await docker(['swarm', 'init', '--advertise-addr', '127.0.0.1']);
        initializedSwarm = true;
      }
    }
    work = await mkdtemp(path.join(os.tmpdir(), 'lms-e2e-deploy-'));
    deployDir = path.join(work, 'deploys');
    await mkdir(deployDir);
    const [http, httpsPort] = await Promise.all([freePort(), freePort()]);
    const envFile = path.join(work, 'prod.env');
    await writeFile(
      envFile,
      Object.entries({
        SECRET_KEY: 'e2e-only-not-a-secret-'.padEnd(80, '0'),
        WEBHOOK_SECRET_KEY: '2'.repeat(64),
        POSTGRES_PASSWORD: '0123456789abcdef0123456789abcdef',
        REDIS_PASSWORD: 'fedcba9876543210fedcba9876543210',
        SMTP_URL: 'smtp://mail.invalid:25',
        APP_DOMAIN: domain,
        LETSENCRYPT_EMAIL: 'ops@example.com',
        PUBLISH_ADDRESS: '127.0.0.1',
        HTTP_PORT: String(http),
        HTTPS_PORT: String(httpsPort),
        // The load below is one client: per-address limits would answer it 429.
        RATE_LIMIT_ENABLED: 'false',
        // No Prometheus in this stack: the watch window checks container health only (and says so).
        PROMETHEUS_PORT: String(await freePort()),
        LMS_IMAGE: v1,
        CADDY_IMAGE: caddyImage,
        // Swarm watches each new task this long for a failure before the next (production: 30 s).
        SWARM_UPDATE_MONITOR: '5s',
      })
        .map(([name, value]) => `${name}=${value}`)
        .join('\n'),
    );
    // Healthchecks every 2 s instead of 15–30 s: Swarm counts a new task once it is healthy, and
    // the rolling updates below replace eight tasks one at a time.
    const fastHealth = path.join(work, 'fast-health.yml');
    await writeFile(
      fastHealth,
      `services:\n${['api', 'worker', 'scheduler'].map((service) => `  ${service}:\n    healthcheck:\n      interval: 2s\n      start_period: 5s\n`).join('')}`,
    );
    stackArgs = [
      '--env',
      'prod',
      '--project-name',
      project,
      '--env-file',
      envFile,
      ...(onSwarm ? ['--override', fastHealth] : []),
    ];
    upArgs = onSwarm ? ['--orchestrator', 'swarm'] : [];
    site = { host: domain, port: httpsPort, ca: '', agent: new https.Agent({ keepAlive: true, maxSockets: 8 }) };
  });

  afterAll(async () => {
    site.agent.destroy();
    client?.close();
    await removeProject(project);
    if (initializedSwarm) await docker(['swarm', 'leave', '--force'], { reject: false });
    await docker(['rmi', v1, v2, broken, caddyImage], { reject: false });
    await rm(work, { recursive: true, force: true });
  });

  const env = () => ({ LMS_DEPLOY_DIR: deployDir });

  /**
   * Reads (the catalogue) and writes (an instructor creating courses) through Caddy over HTTP/2 at a
   * bounded rate until stopped, and once a second a learner completing the next lesson — which
   * queues a progress job of its own (its id names the lesson); every answer that is not the
   * expected 200/201 is a failure.
   */
  function steadyLoad(perSecond: number) {
    let running = true;
    let sent = 0;
    const failures: string[] = [];
    const one = async (index: number) => {
      const lesson = index % perSecond === 0 ? learner.lessons.shift() : undefined;
      const write = index % 4 === 0;
      const what = lesson ? 'complete' : write ? 'POST' : 'GET';
      try {
        const answer = lesson
          ? await client.request('POST', `/api/v1/enrollments/${learner.enrolmentId}/lessons/${lesson}/complete`, {
              token: learner.token,
            })
          : write
            ? await client.request('POST', '/api/v1/courses', {
                token: teacherToken,
                json: { title: `Load ${index}`, description: 'written during a deploy' },
              })
            : await client.request('GET', '/api/v1/courses?limit=5');
        if (answer.status !== (write && !lesson ? 201 : 200))
          failures.push(`${what} → ${answer.status} ${answer.body.slice(0, 200)}`);
        else if (lesson) learner.completed.push(lesson);
      } catch (error) {
        failures.push(`${what} → ${error instanceof Error ? error.message : String(error)}`);
      }
    };
    const inFlight = new Set<Promise<void>>();
    const loop = (async () => {
      while (running) {
        const request = one(sent++).finally(() => inFlight.delete(request));
        inFlight.add(request);
        await new Promise((resolve) => setTimeout(resolve, 1000 / perSecond));
      }
      await Promise.all(inFlight);
    })();
    return {
      async stop() {
        running = false;
        await loop;
        return { sent, failures };
      },
    };
  }

  /**
   * No job lost: every lesson completion the API accepted so far has its progress job completed
   * (BullMQ keeps completed jobs a day), whichever worker — old, new, drained or replaced — took it.
   */
  async function expectNoJobLost(): Promise<void> {
    expect(learner.completed.length).toBeGreaterThan(0);
    const expected = learner.completed.map((lesson) => `progress-recompute-${learner.enrolmentId}-lesson-${lesson}`);
    const missing = await eventually(
      'every progress job of a completed lesson completed',
      async () => {
        const listed = await docker([
          'exec',
          await containerOf(project, 'scheduler'),
          'lmsctl',
          'queue',
          'jobs',
          'progress',
          '--state',
          'completed',
          '--limit',
          '10000',
          '--json',
        ]);
        const done = new Set((JSON.parse(listed.stdout) as { jobs: Array<{ id: string }> }).jobs.map((job) => job.id));
        const left = expected.filter((id) => !done.has(id));
        if (left.length) throw new Error(`${left.length} not completed, e.g. ${left[0]}`);
        return left;
      },
      { timeoutMs: 120_000, intervalMs: 2000 },
    );
    expect(missing).toEqual([]);
  }

  /** The images of the service's running containers (on Swarm: of its running tasks). */
  async function imagesOf(service: string): Promise<string[]> {
    const images: string[] = [];
    for (const container of await containersOf(project, service)) {
      images.push((await docker(['inspect', '-f', '{{.Config.Image}}', container])).stdout.trim());
    }
    return images;
  }

  describe(`lmsctl deploy (${orchestrator})`, () => {
    it('the stack runs v1 behind Caddy', async () => {
      const up = await lmsctl(['up', ...stackArgs, ...upArgs, '--wait', '--timeout', '15m'], env());
      expect(up.exitCode, up.stderr.slice(-3000)).toBe(0);
      // v2: the same build under another tag — what a deploy does does not depend on the bits.
      await docker(['tag', v1, v2]);
      // broken: an image whose API listens on the wrong port, so its /ready never answers.
      const builder = await findBuildKitCli(process.env);
      const dockerfile = path.join(work, 'broken.Dockerfile');
      await writeFile(
        dockerfile,
        `FROM ${v1}\nUSER root\nRUN sed -i 's#exec node "$app_dir/api/dist/main.js"#PORT=8001 exec node "$app_dir/api/dist/main.js"#' /usr/local/bin/lms-entrypoint && grep -q PORT=8001 /usr/local/bin/lms-entrypoint\nUSER 1000:1000\n`,
      );
      const build = await execa(builder.argv[0]!, [...builder.argv.slice(1), '-f', dockerfile, '-t', broken, work], {
        env: builder.env,
        reject: false,
      });
      expect(build.exitCode, build.stderr).toBe(0);

      site.ca = (
        await docker(['exec', await containerOf(project, 'caddy'), 'cat', '/data/caddy/pki/authorities/local/root.crt'])
      ).stdout;
      const password = 'an-e2e-password-long-enough';
      await createUserInStack(project, {
        email: 'teacher@example.com',
        name: 'Teacher',
        role: 'instructor',
        password,
      });
      const login = await httpsRequest(site, 'POST', '/api/v1/auth/login', {
        json: { email: 'teacher@example.com', password },
      });
      expect(login.status, login.body).toBe(200);
      teacherToken = (JSON.parse(login.body) as { accessToken: string }).accessToken;
      client = new Http2Client(site);

      // The learner's course: more lessons than the deploys below complete, one a second.
      const course = await client.request('POST', '/api/v1/courses', {
        token: teacherToken,
        json: { title: 'Lessons during deploys', description: 'one progress job per completed lesson' },
      });
      expect(course.status, course.body).toBe(201);
      const courseId = (JSON.parse(course.body) as { id: string }).id;
      for (let number = 1; number <= 400; number++) {
        const lesson = await client.request('POST', `/api/v1/courses/${courseId}/lessons`, {
          token: teacherToken,
          json: { title: `Lesson ${number}`, body: 'read me' },
        });
        expect(lesson.status, lesson.body).toBe(201);
        learner.lessons.push((JSON.parse(lesson.body) as { id: string }).id);
      }
      expect(
        (await client.request('POST', `/api/v1/courses/${courseId}/publish`, { token: teacherToken })).status,
      ).toBe(200);
      await createUserInStack(project, { email: 'learner@example.com', name: 'Learner', role: 'student', password });
      const learnerLogin = await client.request('POST', '/api/v1/auth/login', {
        json: { email: 'learner@example.com', password },
      });
      learner.token = (JSON.parse(learnerLogin.body) as { accessToken: string }).accessToken;
      const enrolment = await client.request('POST', `/api/v1/courses/${courseId}/enroll`, { token: learner.token });
      expect(enrolment.status, enrolment.body).toBe(201);
      learner.enrolmentId = (JSON.parse(enrolment.body) as { id: string }).id;
    });

    it('to production, refuses an image staging never ran, changing nothing', async () => {
      const run = await lmsctl(['deploy', '--image', v2, ...stackArgs], env());
      expect(run.exitCode).toBe(2);
      expect(run.stderr).toContain(`error: staging (lms-staging) never ran ${v2}`);
      expect(await imagesOf('api')).toEqual([v1, v1]);
    });

    it('to a new image: API replicas replaced one at a time, worker and scheduler too, no request failed, no job lost', async () => {
      const load = steadyLoad(20);
      // What staging ran is known by image id: this stack plays staging's part in its history.
      await writeFile(
        path.join(deployDir, 'lms-e2e-staging.jsonl'),
        `${JSON.stringify({ kind: 'deploy', image: v2, imageId: (await docker(['image', 'inspect', '-f', '{{.Id}}', v2])).stdout.trim(), outcome: 'succeeded' })}\n`,
      );
      const run = await lmsctl(
        ['deploy', '--image', v2, '--staging-project', 'lms-e2e-staging', '--watch', '15s', ...stackArgs, '--json'],
        env(),
      );
      const { sent, failures } = await load.stop();
      expect(run.exitCode, run.stderr.slice(-3000)).toBe(0);
      expect(JSON.parse(run.stdout)).toMatchObject({
        kind: 'deploy',
        image: v2,
        previousImage: v1,
        outcome: 'succeeded',
      });
      expect(run.stderr).toContain('the watch window checks container health only');
      expect(failures).toEqual([]);
      await expectNoJobLost();
      expect(sent).toBeGreaterThan(100);
      expect(await imagesOf('api')).toEqual([v2, v2]);
      expect(await imagesOf('worker')).toEqual([v2]);
      expect(await imagesOf('scheduler')).toEqual([v2]);
    });

    it('to an image whose API never becomes ready: rolled back, exit 1 naming why, no request failed, no job lost', async () => {
      const load = steadyLoad(20);
      const run = await lmsctl(
        ['deploy', '--image', broken, '--ready-timeout', '20s', '--skip-staging', ...stackArgs],
        env(),
      );
      const { failures } = await load.stop();
      expect(run.exitCode).toBe(1);
      expect(run.stderr).toContain(`error: deploy of ${broken} rolled back to ${v2}`);
      // On Swarm, either the engine gives up on the unhealthy task first, or lmsctl at the timeout.
      expect(run.stderr).toMatch(
        onSwarm ? /Swarm rolled api back|not running and healthy within 20 s/ : /was not ready within 20\.0 s/,
      );
      expect(failures).toEqual([]);
      await expectNoJobLost();
      expect(await imagesOf('api')).toEqual([v2, v2]);
      expect(await imagesOf('worker')).toEqual([v2]);
    });

    it('deploy rollback goes back to the image before the last successful deploy, gapless and losing no job too; history records everything', async () => {
      const load = steadyLoad(20);
      const run = await lmsctl(['deploy', 'rollback', ...stackArgs], env());
      const { failures } = await load.stop();
      expect(run.exitCode, run.stderr.slice(-3000)).toBe(0);
      expect(run.stdout).toContain(`runs ${v1} (was ${v2})`);
      expect(failures).toEqual([]);
      await expectNoJobLost();
      expect(await imagesOf('api')).toEqual([v1, v1]);

      const history = await lmsctl(['deploy', 'history', ...stackArgs, '--json'], env());
      expect(history.exitCode, history.stderr).toBe(0);
      const deploys = (
        JSON.parse(history.stdout) as {
          deploys: Array<{ kind: string; image: string; outcome: string; reason: string | null }>;
        }
      ).deploys;
      expect(deploys.map((record) => [record.kind, record.image, record.outcome])).toEqual([
        ['deploy', v2, 'succeeded'],
        ['deploy', broken, 'rolled-back'],
        ['rollback', v1, 'succeeded'],
      ]);
      expect(deploys[1]!.reason).toMatch(/not ready|not running and healthy|Swarm rolled api back/);
      // The database's deployments table has them too, written inside the stack.
      const table = await docker([
        'exec',
        await containerOf(project, 'postgres'),
        'psql',
        '-U',
        'lms',
        '-d',
        'lms',
        '-Atc',
        "SELECT kind || ' ' || image || ' ' || outcome FROM deployments ORDER BY started_at",
      ]);
      expect(table.stdout.trim().split('\n')).toEqual([
        `deploy ${v2} succeeded`,
        `deploy ${broken} rolled-back`,
        `rollback ${v1} succeeded`,
      ]);
      // The file beside the project holds the same lines, for jq.
      expect((await readFile(path.join(deployDir, `${project}.jsonl`), 'utf8')).trim().split('\n')).toHaveLength(3);
    });

    it('lmsctl up with the env file still naming the image before the deploy is refused', async () => {
      const up = await lmsctl(['up', ...stackArgs], { ...env(), LMS_IMAGE: v2 });
      expect(up.exitCode).toBe(2);
      expect(up.stderr).toMatch(
        new RegExp(`error: ${project} runs ${v1} (\\(lmsctl deploy\\) )?but LMS_IMAGE says ${v2}`),
      );
      expect(await imagesOf('api')).toEqual([v1, v1]);
    });

    it('refuses a dev stack and an image that is not here, changing nothing', async () => {
      const dev = await lmsctl(['deploy', '--image', v1, '--env', 'dev'], env());
      expect(dev.exitCode).toBe(2);
      const missing = await lmsctl(
        ['deploy', '--image', '127.0.0.1:1/lms-e2e/missing:1', '--skip-staging', ...stackArgs],
        env(),
      );
      expect(missing.exitCode).toBe(1);
      expect(missing.stderr).toContain('is not on this host and cannot be pulled');
      expect(await imagesOf('api')).toEqual([v1, v1]);
    });

    it('down --volumes --yes leaves nothing of the project', async () => {
      const down = await lmsctl(['down', ...stackArgs, '--volumes', '--yes'], env());
      expect(down.exitCode, down.stderr).toBe(0);
      expect(await leftovers(project)).toEqual({ containers: [], volumes: [], networks: [] });
    });
  });
}
