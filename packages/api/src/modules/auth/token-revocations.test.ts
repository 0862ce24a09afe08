import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@lms/core';
import { createApp } from '../../app.js';
import { closeDeps, createDeps } from '../../deps.js';
import { startTcpProxy } from '../../testing/tcp-proxy.js';
import {
  call,
  createApiTestEnv,
  createCourse,
  createTestApi,
  createUser,
  TEST_PASSWORD,
  type TestApi,
  type TestUser,
} from '../../testing/test-app.js';
import type { Express } from 'express';

let api: TestApi;

beforeAll(async () => {
  api = await createTestApi();
});

afterAll(async () => {
  await api.close();
});

interface Signed {
  accessToken: string;
  refreshToken: string;
}

async function login(app: TestApi | Express, user: TestUser): Promise<Signed> {
  const response = await call(app, 'post', '/api/v1/auth/login', {
    body: { email: user.email, password: TEST_PASSWORD },
  });
  expect(response.status).toBe(200);
  return response.body as Signed;
}

const me = (app: TestApi | Express, token: string) => call(app, 'get', '/api/v1/users/me', { token });

describe('access tokens end with their session or account change', () => {
  it('logout refuses the access token at once; the same user’s other session and other users keep working', async () => {
    const user = await createUser(api, 'student');
    const other = await createUser(api, 'student');
    const first = await login(api, user);
    const second = await login(api, user);
    const otherSession = await login(api, other);
    expect((await me(api, first.accessToken)).status).toBe(200);

    expect(
      (await call(api, 'post', '/api/v1/auth/logout', { body: { refreshToken: first.refreshToken } })).status,
    ).toBe(204);
    const refused = await me(api, first.accessToken);
    expect(refused.status).toBe(401);
    expect(refused.body.error.message).toBe('this session was ended; sign in again');
    expect((await me(api, second.accessToken)).status).toBe(200);
    expect((await me(api, otherSession.accessToken)).status).toBe(200);
    expect((await me(api, other.token)).status).toBe(200);
  });

  it('a reused refresh token ends the session’s access tokens too', async () => {
    const user = await createUser(api, 'student');
    const session = await login(api, user);
    const rotated = (await call(api, 'post', '/api/v1/auth/refresh', { body: { refreshToken: session.refreshToken } }))
      .body as Signed;
    expect((await me(api, rotated.accessToken)).status).toBe(200);
    const replay = await call(api, 'post', '/api/v1/auth/refresh', { body: { refreshToken: session.refreshToken } });
    expect(replay.status).toBe(401);
    expect((await me(api, rotated.accessToken)).status).toBe(401);
    expect((await me(api, session.accessToken)).status).toBe(401);
  });

  it('deactivation refuses the account’s tokens for reads and writes at once; tokens after re-activation work', async () => {
    const admin = await createUser(api, 'admin');
    const instructor = await createUser(api, 'instructor');
    const course = await createCourse(api, instructor);
    const user = await createUser(api, 'student');
    const other = await createUser(api, 'student');
    const session = await login(api, user);
    expect((await me(api, session.accessToken)).status).toBe(200);

    const deactivated = await call(api, 'patch', `/api/v1/users/${user.id}`, {
      token: admin.token,
      body: { active: false },
    });
    expect(deactivated.status).toBe(200);
    for (const token of [session.accessToken, user.token]) {
      expect((await me(api, token)).status).toBe(401);
      const write = await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token });
      expect(write.status).toBe(401);
    }
    const enrolments = await api.db.query('SELECT 1 FROM enrollments WHERE user_id = $1', [user.id]);
    expect(enrolments.rowCount).toBe(0);
    // Nobody else is touched: the admin who acted and another student.
    expect((await me(api, admin.token)).status).toBe(200);
    expect((await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token: other.token })).status).toBe(201);

    const reactivated = await call(api, 'patch', `/api/v1/users/${user.id}`, {
      token: admin.token,
      body: { active: true },
    });
    expect(reactivated.status).toBe(200);
    // The tokens from before the deactivation stay refused; a new sign-in works, reads and writes.
    expect((await me(api, session.accessToken)).status).toBe(401);
    const again = await login(api, user);
    expect((await me(api, again.accessToken)).status).toBe(200);
    expect((await call(api, 'post', `/api/v1/courses/${course.id}/enroll`, { token: again.accessToken })).status).toBe(
      201,
    );
  });

  it('a role change refuses tokens carrying the old role; a refresh issues one with the new role', async () => {
    const admin = await createUser(api, 'admin');
    const user = await createUser(api, 'instructor');
    const bystander = await createUser(api, 'instructor');
    const session = await login(api, user);
    const create = (token: string) =>
      call(api, 'post', '/api/v1/courses', { token, body: { title: 'Old role', description: 'Made after demotion' } });
    expect((await create(session.accessToken)).status).toBe(201);

    const demoted = await call(api, 'patch', `/api/v1/users/${user.id}`, {
      token: admin.token,
      body: { role: 'student' },
    });
    expect(demoted.body.role).toBe('student');
    expect((await create(session.accessToken)).status).toBe(401);
    expect((await create(user.token)).status).toBe(401);
    expect((await create(bystander.token)).status).toBe(201);

    const refreshed = await call(api, 'post', '/api/v1/auth/refresh', { body: { refreshToken: session.refreshToken } });
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.user.role).toBe('student');
    const newToken = (refreshed.body as Signed).accessToken;
    expect((await me(api, newToken)).body.role).toBe('student');
    expect((await create(newToken)).status).toBe(403);
  });

  it('an admin change that touches neither role nor active flag leaves the tokens alone', async () => {
    const admin = await createUser(api, 'admin');
    const user = await createUser(api, 'student');
    const same = await call(api, 'patch', `/api/v1/users/${user.id}`, {
      token: admin.token,
      body: { role: 'student' },
    });
    expect(same.status).toBe(200);
    expect((await me(api, user.token)).status).toBe(200);
  });
});

describe('while Redis does not answer', () => {
  it('fails open with a warning, keeps logout working, and enforces the deny-list again once Redis is back', async () => {
    const proxy = await startTcpProxy(6379);
    const env = await createApiTestEnv('revocations');
    const lines: string[] = [];
    const destination = new PassThrough();
    destination.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
    const parsed = env.config({ REDIS_URL: `redis://127.0.0.1:${proxy.port}` });
    const config = { ...parsed, SECRET_KEY: parsed.SECRET_KEY ?? '' };
    const deps = createDeps(config, {
      redisPrefix: `${env.redisPrefix}:`,
      logger: createLogger({ level: 'info', destination }),
    });
    const messages = () => lines.map((line) => JSON.parse(line) as { level: string; msg: string });
    try {
      const app = createApp(deps);
      // createTestApi's logger is silent; this app logs to `lines`, on the same kind of environment.
      const outage: TestApi = {
        env,
        app,
        deps,
        config,
        db: deps.db.primary,
        close: () => Promise.resolve(),
      };
      const revoked = await createUser(outage, 'student');
      const during = await createUser(outage, 'student');
      const revokedSession = await login(app, revoked);
      const duringSession = await login(app, during);
      await call(app, 'post', '/api/v1/auth/logout', { body: { refreshToken: revokedSession.refreshToken } });
      expect((await me(app, revokedSession.accessToken)).status).toBe(401);

      proxy.cut();
      // Fail open: signature and expiry only, so a signed-in user is still served…
      expect((await me(app, duringSession.accessToken)).status).toBe(200);
      expect((await me(app, revokedSession.accessToken)).status).toBe(200);
      // …and a logout still ends the session's refresh tokens, though not its access token.
      const logout = await call(app, 'post', '/api/v1/auth/logout', {
        body: { refreshToken: duringSession.refreshToken },
      });
      expect(logout.status).toBe(204);
      const refresh = await call(app, 'post', '/api/v1/auth/refresh', {
        body: { refreshToken: duringSession.refreshToken },
      });
      expect(refresh.status).toBe(401);
      const warnings = messages().filter((line) => line.level === 'warn' && line.msg.includes('deny-list'));
      const notWritten =
        'could not add to the token deny-list (Redis unreachable): access tokens already issued stay valid until they expire';
      // One warning when checking stops (not one per request); one per entry not written: the
      // logout's, and the reuse-revocation's of the refresh that presented the logged-out token.
      expect(warnings.map((line) => line.msg)).toEqual([
        'token deny-list unreachable: access tokens are checked by signature and expiry only until Redis answers',
        notWritten,
        notWritten,
      ]);

      proxy.restore();
      let status = 0;
      for (let waited = 0; status !== 401 && waited < 15_000; waited += 250) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        status = (await me(app, revokedSession.accessToken)).status;
      }
      // The entry written before the outage is enforced again, without a restart.
      expect(status).toBe(401);
      expect(messages().map((line) => line.msg)).toContain(
        'token deny-list reachable again: revoked access tokens are refused again',
      );
      expect(lines.join('\n')).not.toContain(revokedSession.accessToken);
    } finally {
      await closeDeps(deps);
      await env.cleanup();
      await proxy.close();
    }
  });
});
