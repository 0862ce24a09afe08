import type pg from 'pg';
import { one } from '@lms/core';

export interface CertificateRow {
  id: string;
  code: string;
  learnerName: string;
  courseTitle: string;
  issuedAt: Date;
  /** The PDF is stored (in the row or as a file). */
  stored: boolean;
}

interface Row {
  id: string;
  code: string;
  learner_name: string;
  course_title: string;
  issued_at: Date;
  stored: boolean;
}

/**
 * The enrolment's certificate, created with `candidate` when there is none, and locked for the
 * rest of the caller's transaction. A concurrent run waits on the unique enrolment id until the
 * first one commits (or rolls back), so one certificate exists per enrolment and only the lock
 * holder renders its PDF.
 */
export async function lockOrCreateCertificate(
  client: pg.PoolClient,
  candidate: {
    enrollmentId: string;
    userId: string;
    courseId: string;
    code: string;
    learnerName: string;
    courseTitle: string;
  },
): Promise<CertificateRow> {
  await client.query(
    `INSERT INTO certificates (enrollment_id, user_id, course_id, code, learner_name, course_title)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (enrollment_id) DO NOTHING`,
    [
      candidate.enrollmentId,
      candidate.userId,
      candidate.courseId,
      candidate.code,
      candidate.learnerName,
      candidate.courseTitle,
    ],
  );
  const locked = await client.query<Row>(
    `SELECT id, code, learner_name, course_title, issued_at, (pdf IS NOT NULL OR pdf_path IS NOT NULL) AS stored
       FROM certificates WHERE enrollment_id = $1 FOR UPDATE`,
    [candidate.enrollmentId],
  );
  const row = one(locked);
  return {
    id: row.id,
    code: row.code,
    learnerName: row.learner_name,
    courseTitle: row.course_title,
    issuedAt: row.issued_at,
    stored: row.stored,
  };
}

/** Stores the PDF in the row, or the name of its file under CERTIFICATE_STORAGE_DIR. */
export async function storeCertificatePdf(
  client: pg.PoolClient,
  certificateId: string,
  stored: { pdf: Buffer } | { path: string },
): Promise<void> {
  if ('pdf' in stored) {
    await client.query('UPDATE certificates SET pdf = $2, pdf_path = NULL WHERE id = $1', [certificateId, stored.pdf]);
  } else {
    await client.query('UPDATE certificates SET pdf_path = $2, pdf = NULL WHERE id = $1', [certificateId, stored.path]);
  }
}
