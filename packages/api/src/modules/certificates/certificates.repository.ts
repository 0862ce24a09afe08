import type pg from 'pg';
import { maybeOne } from '@lms/core';
import { keysetPage, type Cursor, type KeysetRow } from '../../lib/pagination.js';

export interface CertificateRow {
  id: string;
  enrollment_id: string;
  user_id: string;
  course_id: string;
  code: string;
  learner_name: string;
  course_title: string;
  issued_at: Date;
}

const COLUMNS = 'id, enrollment_id, user_id, course_id, code, learner_name, course_title, issued_at';

/**
 * All SQL about certificates (the worker issues them; the API lists, serves and verifies them).
 * Every read is on the primary, never a replica: the worker e-mails a certificate's link and
 * code the moment it is issued, and the learner's click or an employer's verify must not find
 * it missing (a public `valid: false` for a real certificate); no write of the learner's own
 * precedes it that read-your-writes could key on.
 */
export class CertificatesRepository {
  constructor(private readonly db: { primary: pg.Pool }) {}

  async listForUser(userId: string, limit: number, after: Cursor | null): Promise<Array<CertificateRow & KeysetRow>> {
    const page = keysetPage({ sort: 'issued_at', id: 'id', after, limit, params: [userId] });
    const { rows } = await this.db.primary.query<CertificateRow & KeysetRow>(
      `SELECT ${COLUMNS}, ${page.key} FROM certificates WHERE user_id = $1 AND ${page.where} ${page.orderByLimit}`,
      page.params,
    );
    return rows;
  }

  async findById(id: string): Promise<CertificateRow | null> {
    const result = await this.db.primary.query<CertificateRow>(`SELECT ${COLUMNS} FROM certificates WHERE id = $1`, [
      id,
    ]);
    return maybeOne(result) ?? null;
  }

  async findByCode(code: string): Promise<CertificateRow | null> {
    const result = await this.db.primary.query<CertificateRow>(`SELECT ${COLUMNS} FROM certificates WHERE code = $1`, [
      code,
    ]);
    return maybeOne(result) ?? null;
  }

  async pdf(id: string): Promise<{ pdf: Buffer | null; pdf_path: string | null } | null> {
    const result = await this.db.primary.query<{ pdf: Buffer | null; pdf_path: string | null }>(
      'SELECT pdf, pdf_path FROM certificates WHERE id = $1',
      [id],
    );
    return maybeOne(result) ?? null;
  }
}
