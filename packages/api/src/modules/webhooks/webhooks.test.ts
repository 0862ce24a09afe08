import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SecretDecryptionError, webhookSecretBox, webhookSecretContext } from '@lms/core';
import { call, createTestApi, createUser, type TestApi, type TestUser } from '../../testing/test-app.js';

let api: TestApi;
let admin: TestUser;
const WEBHOOK_SECRET_KEY = '5e'.repeat(32);

beforeAll(async () => {
  api = await createTestApi({ WEBHOOK_SECRET_KEY });
  admin = await createUser(api, 'admin');
});

afterAll(async () => {
  await api.close();
});

describe('webhook subscriptions', () => {
  it('creates one and shows the secret only in that response', async () => {
    const created = await call(api, 'post', '/api/v1/webhooks', {
      token: admin.token,
      body: {
        url: 'https://hooks.example.com/lms',
        events: ['enrollment.created', 'certificate.issued'],
        description: 'CRM',
      },
    });
    expect(created.status).toBe(201);
    expect(created.body.secret).toMatch(/^[0-9a-f]{64}$/);
    const id = created.body.id as string;
    const listed = await call(api, 'get', '/api/v1/webhooks', { token: admin.token });
    expect(listed.body.items).toContainEqual(expect.objectContaining({ id, active: true, consecutiveFailures: 0 }));
    expect(JSON.stringify(listed.body)).not.toContain(created.body.secret as string);
    expect(
      JSON.stringify((await call(api, 'get', `/api/v1/webhooks/${id}`, { token: admin.token })).body),
    ).not.toContain('secret');
  });

  it('stores the secret encrypted: no plain text in the row, and it opens only with the key, for that row', async () => {
    const created = await call(api, 'post', '/api/v1/webhooks', {
      token: admin.token,
      body: { url: 'https://hooks.example.com/sealed', events: ['course.completed'] },
    });
    const { id, secret } = created.body as { id: string; secret: string };
    const { rows } = await api.db.query<{ secret: string | null; secret_ciphertext: Buffer; secret_key_id: string }>(
      'SELECT secret, secret_ciphertext, secret_key_id FROM webhook_subscriptions WHERE id = $1',
      [id],
    );
    const [row] = rows;
    const box = webhookSecretBox({ WEBHOOK_SECRET_KEY })!;
    expect(row!.secret).toBeNull();
    expect(row!.secret_key_id).toBe(box.current.id);
    expect(row!.secret_ciphertext.toString('latin1')).not.toContain(secret);
    expect(row!.secret_ciphertext.toString('hex')).not.toContain(secret);
    const sealed = { keyId: row!.secret_key_id, ciphertext: row!.secret_ciphertext };
    expect(box.open(sealed, webhookSecretContext(id))).toBe(secret);
    // Copied into another row, it does not open there.
    expect(() => box.open(sealed, webhookSecretContext(admin.id))).toThrow(SecretDecryptionError);
    // Neither the audit trail nor any read of the subscription holds it.
    const audit = await api.db.query('SELECT details FROM audit_log WHERE entity_id = $1', [id]);
    expect(JSON.stringify(audit.rows)).not.toContain(secret);
  });

  it('keeps the secret in plain text only where no key is set (development)', async () => {
    const keyless = await createTestApi();
    try {
      const owner = await createUser(keyless, 'admin');
      const created = await call(keyless, 'post', '/api/v1/webhooks', {
        token: owner.token,
        body: { url: 'https://hooks.example.com/dev', events: ['course.completed'] },
      });
      const { rows } = await keyless.db.query<{ secret: string; secret_key_id: string | null }>(
        'SELECT secret, secret_key_id FROM webhook_subscriptions WHERE id = $1',
        [created.body.id],
      );
      expect(rows).toEqual([{ secret: created.body.secret, secret_key_id: null }]);
    } finally {
      await keyless.close();
    }
  });

  it('shows why the worker disabled a subscription, and re-enabling clears it', async () => {
    const created = (
      await call(api, 'post', '/api/v1/webhooks', {
        token: admin.token,
        body: { url: 'https://down.example/h', events: ['course.completed'] },
      })
    ).body as { id: string };
    await api.db.query(
      `UPDATE webhook_subscriptions SET active = false, consecutive_failures = 10, disabled_at = now(), disabled_reason = '10 failed deliveries in a row' WHERE id = $1`,
      [created.id],
    );
    const disabled = await call(api, 'get', `/api/v1/webhooks/${created.id}`, { token: admin.token });
    expect(disabled.body).toMatchObject({
      active: false,
      consecutiveFailures: 10,
      disabledReason: '10 failed deliveries in a row',
    });
    const enabled = await call(api, 'patch', `/api/v1/webhooks/${created.id}`, {
      token: admin.token,
      body: { active: true },
    });
    expect(enabled.body).toMatchObject({
      active: true,
      consecutiveFailures: 0,
      disabledAt: null,
      disabledReason: null,
    });
  });

  it('lists delivery attempts newest first', async () => {
    const created = (
      await call(api, 'post', '/api/v1/webhooks', {
        token: admin.token,
        body: { url: 'https://x.example/h', events: ['lesson.completed'] },
      })
    ).body as { id: string };
    const event = await api.db.query<{ id: string }>(
      `INSERT INTO webhook_events (type, payload) VALUES ('lesson.completed', '{}') RETURNING id`,
    );
    await api.db.query(
      `INSERT INTO webhook_deliveries (subscription_id, event_id, attempt, status, response_status, duration_ms, error, created_at) VALUES
       ($1, $2, 1, 'failed', 503, 40, 'HTTP 503', now() - interval '1 minute'), ($1, $2, 2, 'succeeded', 200, 35, NULL, now())`,
      [created.id, event.rows[0]!.id],
    );
    const deliveries = await call(api, 'get', `/api/v1/webhooks/${created.id}/deliveries`, { token: admin.token });
    expect(deliveries.body.items.map((d: { attempt: number; status: string }) => [d.attempt, d.status])).toEqual([
      [2, 'succeeded'],
      [1, 'failed'],
    ]);
    const first = await call(api, 'get', `/api/v1/webhooks/${created.id}/deliveries?limit=1`, { token: admin.token });
    const second = await call(
      api,
      'get',
      `/api/v1/webhooks/${created.id}/deliveries?limit=1&cursor=${first.body.nextCursor}`,
      {
        token: admin.token,
      },
    );
    expect(second.body.nextCursor).toBeNull();
    expect([...first.body.items, ...second.body.items].map((d: { attempt: number }) => d.attempt)).toEqual([2, 1]);
  });

  it('accepts targets on this machine when WEBHOOK_ALLOW_PRIVATE_TARGETS is set (development)', async () => {
    const devApi = await createTestApi({ WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true' });
    try {
      const devAdmin = await createUser(devApi, 'admin');
      for (const url of ['http://localhost.:8080/x', 'http://127.0.0.1:8080/x', 'http://[::1]:8080/x']) {
        const response = await call(devApi, 'post', '/api/v1/webhooks', {
          token: devAdmin.token,
          body: { url, events: ['course.completed'] },
        });
        expect(response.status, url).toBe(201);
      }
    } finally {
      await devApi.close();
    }
  });

  it('refuses internal targets and unknown events, and deletes with an audit record', async () => {
    for (const url of [
      'http://127.0.0.1:8080/x',
      'http://localhost/x',
      'http://10.0.0.5/x',
      'http://[::1]/x',
      'http://169.254.169.254/latest',
      'http://[::ffff:169.254.169.254]/latest',
      'http://100.64.0.1/x',
      'http://localhost./x',
      'http://API.LocalHost./x',
      'http://127.0.0.1./x',
      'http://2130706433/x',
      'http://192.0.0.8/x',
      'http://[64:ff9b:1::a00:1]/x',
      'http://[2001::1]/x',
      'http://[100::1]/x',
      'http://[::127.0.0.1]/x',
    ]) {
      const response = await call(api, 'post', '/api/v1/webhooks', {
        token: admin.token,
        body: { url, events: ['course.completed'] },
      });
      expect(response.status, url).toBe(400);
      expect(response.body.error.message, url).toMatch(/^url: .+; a webhook must reach a public address$/);
    }
    expect(
      (
        await call(api, 'post', '/api/v1/webhooks', {
          token: admin.token,
          body: { url: 'https://a.example', events: ['user.deleted'] },
        })
      ).status,
    ).toBe(400);
    const created = (
      await call(api, 'post', '/api/v1/webhooks', {
        token: admin.token,
        body: { url: 'https://gone.example/h', events: ['course.completed'] },
      })
    ).body as { id: string };
    expect((await call(api, 'delete', `/api/v1/webhooks/${created.id}`, { token: admin.token })).status).toBe(204);
    expect((await call(api, 'get', `/api/v1/webhooks/${created.id}`, { token: admin.token })).status).toBe(404);
    const audit = await api.db.query(`SELECT action FROM audit_log WHERE entity_id = $1 ORDER BY id`, [created.id]);
    expect(audit.rows.map((row: { action: string }) => row.action)).toEqual(['webhook.created', 'webhook.deleted']);
  });
});
