import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, createTestApi, createUser, TEST_PASSWORD, type TestApi } from '../../testing/test-app.js';

let api: TestApi;

beforeAll(async () => {
  api = await createTestApi();
});

afterAll(async () => {
  await api.close();
});

describe('user administration', () => {
  it('lists users page by page without password hashes', async () => {
    const admin = await createUser(api, 'admin');
    for (let index = 0; index < 3; index++) await createUser(api, 'student');
    const first = await call(api, 'get', '/api/v1/users?limit=2', { token: admin.token });
    expect(first.body.items).toHaveLength(2);
    expect(first.body.nextCursor).toEqual(expect.any(String));
    const second = await call(api, 'get', `/api/v1/users?limit=2&cursor=${first.body.nextCursor}`, {
      token: admin.token,
    });
    const ids = [...first.body.items, ...second.body.items].map((user: { id: string }) => user.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(Object.keys(first.body.items[0] as object).sort()).toEqual([
      'active',
      'createdAt',
      'email',
      'id',
      'lastLoginAt',
      'name',
      'role',
    ]);
  });

  it('changes a role or deactivates an account, with an audit record', async () => {
    const admin = await createUser(api, 'admin');
    const user = await createUser(api, 'student');
    const promoted = await call(api, 'patch', `/api/v1/users/${user.id}`, {
      token: admin.token,
      body: { role: 'instructor' },
    });
    expect(promoted.body).toMatchObject({ id: user.id, role: 'instructor', active: true });
    const login = await call(api, 'post', '/api/v1/auth/login', {
      body: { email: user.email, password: TEST_PASSWORD },
    });
    expect(login.status).toBe(200);
    const deactivated = await call(api, 'patch', `/api/v1/users/${user.id}`, {
      token: admin.token,
      body: { active: false },
    });
    expect(deactivated.body.active).toBe(false);
    // Deactivation ends the account's sessions: reactivating it does not bring them back.
    const sessions = await api.db.query<{ open: number }>(
      'SELECT count(*) FILTER (WHERE revoked_at IS NULL)::int AS open FROM refresh_tokens WHERE user_id = $1',
      [user.id],
    );
    expect(sessions.rows[0]!.open).toBe(0);
    const audit = await api.db.query<{ details: unknown }>(
      `SELECT details FROM audit_log WHERE entity_id = $1 ORDER BY id`,
      [user.id],
    );
    expect(audit.rows.map((row) => row.details)).toEqual([
      { from: { role: 'student', active: true }, to: { role: 'instructor', active: true } },
      { from: { role: 'instructor', active: true }, to: { role: 'instructor', active: false } },
    ]);
    expect(
      (await call(api, 'patch', `/api/v1/users/${user.id}`, { token: admin.token, body: { role: 'superuser' } }))
        .status,
    ).toBe(400);
    expect((await call(api, 'patch', `/api/v1/users/${user.id}`, { token: admin.token, body: {} })).status).toBe(400);
  });

  it('never removes the last active admin', async () => {
    const lonely = await createTestApi();
    try {
      const admin = await createUser(lonely, 'admin');
      const refused = await call(lonely, 'patch', `/api/v1/users/${admin.id}`, {
        token: admin.token,
        body: { role: 'student' },
      });
      expect(refused.status).toBe(409);
      expect(refused.body.error.message).toBe('this is the last active admin; make another admin first');

      // Two admins demoting each other at the same moment: one of them stays an admin.
      const second = await createUser(lonely, 'admin');
      const both = await Promise.all([
        call(lonely, 'patch', `/api/v1/users/${admin.id}`, { token: second.token, body: { role: 'student' } }),
        call(lonely, 'patch', `/api/v1/users/${second.id}`, { token: admin.token, body: { role: 'student' } }),
      ]);
      const [winner, loser] = both.map((response) => response.status).sort();
      expect(winner).toBe(200);
      // The loser is refused either way: 409 when it passed authentication before the other
      // demotion committed; 401 when that demotion came first, for a role change refuses the
      // access tokens carrying the old role.
      expect([401, 409]).toContain(loser);
      const admins = await lonely.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM users WHERE role = 'admin' AND active`,
      );
      expect(admins.rows[0]!.n).toBe(1);
    } finally {
      await lonely.close();
    }
  });
});
