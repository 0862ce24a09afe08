import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, createTestApi, createUser, TEST_PASSWORD, type TestApi } from '../testing/test-app.js';

let api: TestApi;

beforeAll(async () => {
  api = await createTestApi();
});

afterAll(async () => {
  await api.close();
});

describe('the client address a trusted proxy passes along', () => {
  it('is stored with the session only when it is an address: junk X-Forwarded-For is a sign-in, not a 500', async () => {
    const user = await createUser(api, 'student');
    // supertest connects from 127.0.0.1, a trusted proxy by default (TRUST_PROXY=loopback).
    for (const forwarded of ['junk', '1.2.3.4, <script>', '999.1.1.1', '203.0.113.7']) {
      const response = await call(api, 'post', '/api/v1/auth/login', {
        body: { email: user.email, password: TEST_PASSWORD },
        headers: { 'X-Forwarded-For': forwarded },
      });
      expect(response.status, forwarded).toBe(200);
    }
    const { rows } = await api.db.query<{ ip: string | null }>(
      'SELECT host(ip) AS ip FROM refresh_tokens WHERE user_id = $1 ORDER BY created_at',
      [user.id],
    );
    // Junk falls back to the socket's peer (this test's loopback connection); a real address is kept.
    expect(rows.map((row) => row.ip)).toEqual(['127.0.0.1', '127.0.0.1', '127.0.0.1', '203.0.113.7']);
  });
});
