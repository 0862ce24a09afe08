import { setTimeout as sleep } from 'node:timers/promises';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient } from '@lms/core';
import { call, createUser, createTestApi, TEST_PASSWORD, TEST_SECRET, type TestApi } from '../../testing/test-app.js';

let api: TestApi;

beforeAll(async () => {
  api = await createTestApi();
});

afterAll(async () => {
  await api.close();
});

async function register(email: string, password = TEST_PASSWORD) {
  return call(api, 'post', '/api/v1/auth/register', { body: { email, password, name: 'Grace Hopper' } });
}

describe('registration and sign-in', () => {
  it('registers a student, lower-cases the e-mail, returns tokens and queues the welcome e-mail', async () => {
    const response = await register('Grace@Example.COM');
    expect(response.status).toBe(201);
    expect(response.body).toEqual({
      user: { id: expect.any(String), email: 'grace@example.com', name: 'Grace Hopper', role: 'student' },
      accessToken: expect.stringMatching(/^ey/),
      refreshToken: expect.any(String),
    });
    const me = await call(api, 'get', '/api/v1/users/me', { token: response.body.accessToken as string });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ email: 'grace@example.com', role: 'student', active: true });
    expect(me.body).not.toHaveProperty('passwordHash');

    // Written with the account, in its transaction; the worker's relay queues it.
    const outbox = await api.db.query<{ job_id: string; payload: unknown }>(
      `SELECT job_id, payload FROM outbox WHERE job_name = 'email.send'`,
    );
    expect(outbox.rows).toContainEqual({
      job_id: `email-send-welcome-${response.body.user.id as string}`,
      payload: {
        to: 'grace@example.com',
        template: 'welcome',
        props: { name: 'Grace Hopper' },
        idempotencyKey: `welcome-${response.body.user.id as string}`,
      },
    });
  });

  it('refuses a taken e-mail (409), a short password and a malformed e-mail (400)', async () => {
    await register('taken@example.com');
    expect((await register('TAKEN@example.com')).status).toBe(409);
    const short = await register('short@example.com', 'short');
    expect(short.status).toBe(400);
    expect(short.body.error.message).toBe('password: must be at least 10 characters');
    expect((await register('not-an-email')).status).toBe(400);
  });

  it('signs in with the right password only; a deactivated account is refused', async () => {
    await register('login@example.com');
    const ok = await call(api, 'post', '/api/v1/auth/login', {
      body: { email: 'LOGIN@example.com', password: TEST_PASSWORD },
    });
    expect(ok.status).toBe(200);
    expect(ok.body.user.email).toBe('login@example.com');
    const wrong = await call(api, 'post', '/api/v1/auth/login', {
      body: { email: 'login@example.com', password: 'wrong password!!' },
    });
    expect(wrong.status).toBe(401);
    const unknown = await call(api, 'post', '/api/v1/auth/login', {
      body: { email: 'nobody@example.com', password: TEST_PASSWORD },
    });
    expect(unknown.status).toBe(401);
    expect(unknown.body.error.message).toBe(wrong.body.error.message);

    const inactive = await createUser(api, 'student', { active: false });
    const refused = await call(api, 'post', '/api/v1/auth/login', {
      body: { email: inactive.email, password: TEST_PASSWORD },
    });
    expect(refused.status).toBe(403);
  });
});

describe('refresh tokens', () => {
  it('rotate: the new pair works, the old refresh token stops working', async () => {
    const first = (await register('rotate@example.com')).body as { refreshToken: string };
    const second = await call(api, 'post', '/api/v1/auth/refresh', { body: { refreshToken: first.refreshToken } });
    expect(second.status).toBe(200);
    expect(second.body.refreshToken).not.toBe(first.refreshToken);
    expect((await call(api, 'get', '/api/v1/users/me', { token: second.body.accessToken as string })).status).toBe(200);
  });

  it('reuse of a rotated token revokes the whole session', async () => {
    const first = (await register('reuse@example.com')).body as { refreshToken: string };
    const second = (await call(api, 'post', '/api/v1/auth/refresh', { body: { refreshToken: first.refreshToken } }))
      .body as {
      refreshToken: string;
    };
    const replay = await call(api, 'post', '/api/v1/auth/refresh', { body: { refreshToken: first.refreshToken } });
    expect(replay.status).toBe(401);
    expect(replay.body.error.message).toContain('already used');
    // The legitimate holder's newer token died with the family.
    expect(
      (await call(api, 'post', '/api/v1/auth/refresh', { body: { refreshToken: second.refreshToken } })).status,
    ).toBe(401);
  });

  it('two simultaneous refreshes with one token: one wins, the session is then revoked', async () => {
    const first = (await register('race@example.com')).body as { refreshToken: string };
    const results = await Promise.all(
      [0, 1].map(() => call(api, 'post', '/api/v1/auth/refresh', { body: { refreshToken: first.refreshToken } })),
    );
    expect(results.map((result) => result.status).sort()).toEqual([200, 401]);
  });

  it('a refresh that fails half-way leaves the presented token usable: revoke, insert and link are one transaction', async () => {
    const session = (await register('halfway@example.com')).body as { user: { id: string }; refreshToken: string };
    // Another transaction holding the user's row FOR UPDATE blocks the foreign-key check of the
    // new token's INSERT, so the refresh stops there, after it revoked the presented token.
    // Cancelling that statement on the server makes the insert fail as any real failure would.
    const holder = await connectClient(api.config.DATABASE_URL);
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT id FROM users WHERE id = $1 FOR UPDATE', [session.user.id]);
      let settled = false;
      const refreshing = call(api, 'post', '/api/v1/auth/refresh', { body: { refreshToken: session.refreshToken } });
      void refreshing.then(
        () => (settled = true),
        () => (settled = true),
      );
      for (;;) {
        // From the app's pool: statistics read inside the holder's transaction would not change.
        const { rows } = await api.db.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO refresh_tokens%'`,
        );
        if (rows[0]) {
          await api.db.query('SELECT pg_cancel_backend($1)', [rows[0].pid]);
          break;
        }
        expect(settled, 'the refresh finished without waiting for the locked user row').toBe(false);
        await sleep(20);
      }
      const failed = await refreshing;
      // A cancelled statement (57014, as a statement timeout) is a passing outage: 503, retry later.
      expect(failed.status).toBe(503);
      expect(failed.body.error.code).toBe('service_unavailable');
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }

    const retried = await call(api, 'post', '/api/v1/auth/refresh', { body: { refreshToken: session.refreshToken } });
    expect(retried.status).toBe(200);
    const family = await api.db.query<{ revoked: boolean; replaced: boolean }>(
      `SELECT revoked_at IS NOT NULL AS revoked, replaced_by IS NOT NULL AS replaced
         FROM refresh_tokens WHERE user_id = $1 ORDER BY created_at`,
      [session.user.id],
    );
    // The presented token, now used and linked to its one replacement; nothing of the failed try.
    expect(family.rows).toEqual([
      { revoked: true, replaced: true },
      { revoked: false, replaced: false },
    ]);
  });

  it('logout ends the session', async () => {
    const session = (await register('logout@example.com')).body as { refreshToken: string };
    expect(
      (await call(api, 'post', '/api/v1/auth/logout', { body: { refreshToken: session.refreshToken } })).status,
    ).toBe(204);
    expect(
      (await call(api, 'post', '/api/v1/auth/refresh', { body: { refreshToken: session.refreshToken } })).status,
    ).toBe(401);
  });
});

describe('access tokens', () => {
  const sign = (claims: { sub: string; role: string }, key = TEST_SECRET, expires = '15m') =>
    new SignJWT({ role: claims.role })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(claims.sub)
      .setIssuer('lms-api')
      .setAudience('lms')
      .setIssuedAt()
      .setExpirationTime(expires)
      .sign(new TextEncoder().encode(key));

  it('refuses tampered, expired, foreign-key and alg:none tokens (401)', async () => {
    const user = await createUser(api, 'student');
    const [header, payload, signature] = user.token.split('.') as [string, string, string];
    const promoted = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), role: 'admin' }),
    ).toString('base64url');
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${promoted}.`;
    const expired = await sign({ sub: user.id, role: 'student' }, TEST_SECRET, '-1m');
    const foreign = await sign(
      { sub: user.id, role: 'admin' },
      'some-other-secret-some-other-secret-some-other-secret',
    );
    for (const [what, token] of [
      ['tampered payload', `${header}.${promoted}.${signature}`],
      ['alg none', none],
      ['expired', expired],
      ['other key', foreign],
      ['garbage', 'not.a.jwt'],
    ] as const) {
      const response = await call(api, 'get', '/api/v1/users', { token });
      expect(response.status, what).toBe(401);
      expect(response.body.error.code, what).toBe('unauthorized');
    }
    const expiredMessage = (await call(api, 'get', '/api/v1/users/me', { token: expired })).body.error.message;
    expect(expiredMessage).toBe('access token expired; refresh it');
  });

  it('refuses a validly signed token without an expiry, or whose subject is not a user id (401, never 500)', async () => {
    const user = await createUser(api, 'student');
    const key = new TextEncoder().encode(TEST_SECRET);
    const claims = () =>
      new SignJWT({ role: 'student' }).setProtectedHeader({ alg: 'HS256' }).setIssuer('lms-api').setAudience('lms');
    const forever = await claims().setSubject(user.id).setIssuedAt().sign(key);
    const undated = await claims().setSubject(user.id).setExpirationTime('15m').sign(key);
    const notAnId = await sign({ sub: 'not-a-uuid', role: 'student' });
    const injected = await sign({ sub: "' OR 1=1 --", role: 'admin' });
    for (const [what, token] of [
      ['no exp', forever],
      ['no iat', undated],
      ['sub not a UUID', notAnId],
      ['sub SQL', injected],
    ] as const) {
      const response = await call(api, 'get', '/api/v1/users/me', { token });
      expect(response.status, what).toBe(401);
      expect(response.body.error.code, what).toBe('unauthorized');
    }
  });

  it('refuses a malformed Authorization header', async () => {
    const response = await call(api, 'get', '/api/v1/users/me', { headers: { Authorization: 'Token abc' } });
    expect(response.status).toBe(401);
  });
});
