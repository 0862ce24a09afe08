import { describe, expect, it } from 'vitest';
import { describePostgresUrl, maskSecretsInText, maskUrl, redactSecrets } from './mask.js';

describe('maskUrl', () => {
  it('masks the password and keeps everything else', () => {
    expect(maskUrl('postgres://lms:s3cr%40t@db.internal:5432/lms?sslmode=require')).toBe(
      'postgres://lms:***@db.internal:5432/lms?sslmode=require',
    );
  });

  it('leaves URLs without a password alone', () => {
    expect(maskUrl('postgres://root@127.0.0.1:5432/postgres')).toBe('postgres://root@127.0.0.1:5432/postgres');
  });

  it('masks a message that is not a URL as free text', () => {
    expect(maskUrl('Error: connect to smtp://mailer:hunter2@mail:25 failed')).toBe(
      'Error: connect to smtp://mailer:***@mail:25 failed',
    );
  });

  it('masks secret-looking query parameters', () => {
    expect(maskUrl('postgres://h/db?password=abc&sslmode=disable')).toBe(
      'postgres://h/db?password=***&sslmode=disable',
    );
  });
});

describe('maskSecretsInText', () => {
  it('masks every URL password in free text', () => {
    const text = 'failed: postgres://a:one@h1/db then redis://:two@h2:6379/0 and smtp://u:three@mail:25';
    const masked = maskSecretsInText(text);
    expect(masked).toBe('failed: postgres://a:***@h1/db then redis://:***@h2:6379/0 and smtp://u:***@mail:25');
  });

  it('masks key=value secrets as in libpq connection strings', () => {
    expect(maskSecretsInText('host=db user=lms password=hunter2 dbname=lms')).toBe(
      'host=db user=lms password=*** dbname=lms',
    );
  });

  it('masks `key: value` secrets too', () => {
    expect(maskSecretsInText('retry with password: hunter2 and token:abc')).toBe(
      'retry with password: *** and token:***',
    );
  });
});

describe('redactSecrets', () => {
  it('redacts secret fields at any depth and masks URL passwords in strings, leaving the rest', () => {
    expect(
      redactSecrets({
        to: 'ada@example.com',
        props: { resetToken: 't0k', nested: [{ password: 'p', passwordHash: 'h' }], passMark: 70 },
        DATABASE_URL: 'postgres://u:p@h/db',
        note: 'see redis://:pw@cache:6379',
      }),
    ).toEqual({
      to: 'ada@example.com',
      props: {
        resetToken: '[redacted]',
        nested: [{ password: '[redacted]', passwordHash: '[redacted]' }],
        passMark: 70,
      },
      DATABASE_URL: '[redacted]',
      note: 'see redis://:***@cache:6379',
    });
  });
});

describe('describePostgresUrl', () => {
  it('reads host, port, database and user', () => {
    expect(describePostgresUrl('postgresql://lms:pw@db:6543/lms_prod')).toEqual({
      host: 'db',
      port: 6543,
      database: 'lms_prod',
      user: 'lms',
    });
  });

  it('defaults the port and takes a socket folder from ?host=', () => {
    expect(describePostgresUrl('postgres:///lms?host=/var/run/postgresql&user=root')).toEqual({
      host: '/var/run/postgresql',
      port: 5432,
      database: 'lms',
      user: 'root',
    });
  });
});
