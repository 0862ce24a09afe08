import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, createCourse, createTestApi, createUser, type TestApi, type TestUser } from '../../testing/test-app.js';

let api: TestApi;
let storage: string;
let learner: TestUser;
let certificateId: string;
let fileCertificateId: string;

const PDF = Buffer.from('%PDF-1.4\n% test certificate\n%%EOF\n');

beforeAll(async () => {
  storage = await mkdtemp(path.join(os.tmpdir(), 'lms-certificates-'));
  api = await createTestApi({ CERTIFICATE_STORAGE_DIR: storage });
  const instructor = await createUser(api, 'instructor');
  learner = await createUser(api, 'student', { name: 'Ada Lovelace' });
  const issue = async (code: string, pdf: Buffer | null, pdfPath: string | null) => {
    const course = await createCourse(api, instructor, { title: `Course ${code}` });
    const enrollment = await api.db.query<{ id: string }>(
      `INSERT INTO enrollments (user_id, course_id, status, progress, completed_at) VALUES ($1, $2, 'completed', 100, now()) RETURNING id`,
      [learner.id, course.id],
    );
    const { rows } = await api.db.query<{ id: string }>(
      `INSERT INTO certificates (enrollment_id, user_id, course_id, code, learner_name, course_title, pdf, pdf_path)
       VALUES ($1, $2, $3, $4, 'Ada Lovelace', $5, $6, $7) RETURNING id`,
      [enrollment.rows[0]!.id, learner.id, course.id, code, `Course ${code}`, pdf, pdfPath],
    );
    return rows[0]!.id;
  };
  certificateId = await issue('ABCD-EFGH-1234', PDF, null);
  await writeFile(path.join(storage, 'stored.pdf'), PDF);
  fileCertificateId = await issue('WXYZ-0000-9999', null, 'stored.pdf');
});

afterAll(async () => {
  await api.close();
  await rm(storage, { recursive: true, force: true });
});

describe('certificates', () => {
  it('lists mine', async () => {
    const mine = await call(api, 'get', '/api/v1/certificates', { token: learner.token });
    expect(mine.body.items.map((c: { code: string }) => c.code).sort()).toEqual(['ABCD-EFGH-1234', 'WXYZ-0000-9999']);
    const other = await createUser(api, 'student');
    expect((await call(api, 'get', '/api/v1/certificates', { token: other.token })).body.items).toEqual([]);
  });

  it('lists mine page by page, newest first', async () => {
    const first = await call(api, 'get', '/api/v1/certificates?limit=1', { token: learner.token });
    expect(first.body.nextCursor).toEqual(expect.any(String));
    const second = await call(api, 'get', `/api/v1/certificates?limit=1&cursor=${first.body.nextCursor}`, {
      token: learner.token,
    });
    expect(second.body.nextCursor).toBeNull();
    expect([...first.body.items, ...second.body.items].map((c: { id: string }) => c.id)).toEqual([
      fileCertificateId,
      certificateId,
    ]);
  });

  it('serves the PDF from the database or the storage folder, to its learner and admins only', async () => {
    for (const id of [certificateId, fileCertificateId]) {
      const response = await call(api, 'get', `/api/v1/certificates/${id}/pdf`, { token: learner.token });
      expect(response.status).toBe(200);
      expect(response.headers['content-type']).toBe('application/pdf');
      expect(Buffer.from(response.body as Buffer).equals(PDF)).toBe(true);
    }
    const stranger = await createUser(api, 'student');
    expect(
      (await call(api, 'get', `/api/v1/certificates/${certificateId}/pdf`, { token: stranger.token })).status,
    ).toBe(404);
    const admin = await createUser(api, 'admin');
    expect((await call(api, 'get', `/api/v1/certificates/${certificateId}/pdf`, { token: admin.token })).status).toBe(
      200,
    );
  });

  it('never serves a file outside the storage folder', async () => {
    await api.db.query(`UPDATE certificates SET pdf_path = '../../etc/passwd' WHERE id = $1`, [fileCertificateId]);
    try {
      expect(
        (await call(api, 'get', `/api/v1/certificates/${fileCertificateId}/pdf`, { token: learner.token })).status,
      ).toBe(404);
    } finally {
      await api.db.query(`UPDATE certificates SET pdf_path = 'stored.pdf' WHERE id = $1`, [fileCertificateId]);
    }
  });

  it('verifies a code publicly, revealing only the name, the course and the date', async () => {
    const valid = await call(api, 'get', '/api/v1/certificates/verify/abcd-efgh-1234');
    expect(valid.status).toBe(200);
    expect(valid.body).toEqual({
      valid: true,
      learnerName: 'Ada Lovelace',
      courseTitle: 'Course ABCD-EFGH-1234',
      issuedAt: expect.any(String),
    });
    const unknown = await call(api, 'get', '/api/v1/certificates/verify/NOPE-NOPE');
    expect(unknown.body).toEqual({ valid: false, learnerName: null, courseTitle: null, issuedAt: null });
  });
});
