import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { NotFoundError } from '@lms/core';
import { decodeCursor, toPage, type PageQuery } from '../../lib/pagination.js';
import type { AuthUser } from '../../lib/auth-user.js';
import type { CertificateRow, CertificatesRepository } from './certificates.repository.js';

function presentCertificate(row: CertificateRow) {
  return {
    id: row.id,
    code: row.code,
    courseId: row.course_id,
    enrollmentId: row.enrollment_id,
    courseTitle: row.course_title,
    issuedAt: row.issued_at.toISOString(),
  };
}

export class CertificatesService {
  constructor(
    private readonly certificates: CertificatesRepository,
    /** CERTIFICATE_STORAGE_DIR, where the worker puts PDFs it does not store in the database. */
    private readonly storageDir: string | undefined,
  ) {}

  async list(user: AuthUser, page: PageQuery) {
    const rows = await this.certificates.listForUser(user.id, page.limit, decodeCursor(page.cursor));
    return toPage(rows, page.limit, presentCertificate);
  }

  /** The PDF of a certificate, for its learner and admins only. */
  async pdf(user: AuthUser, id: string): Promise<{ file: Buffer; code: string }> {
    const certificate = await this.certificates.findById(id);
    if (!certificate || (certificate.user_id !== user.id && user.role !== 'admin'))
      throw new NotFoundError('no such certificate');
    const stored = await this.certificates.pdf(id);
    if (stored?.pdf) return { file: stored.pdf, code: certificate.code };
    if (stored?.pdf_path && this.storageDir) {
      const root = path.resolve(this.storageDir);
      const file = path.resolve(root, stored.pdf_path);
      // Never serve a file outside the storage folder, whatever the row says.
      if (file.startsWith(root + path.sep)) return { file: await readFile(file), code: certificate.code };
    }
    throw new NotFoundError('the certificate PDF is not available yet; try again in a minute');
  }

  /** Public check of a certificate code: only the name, course and date, nothing else. */
  async verify(code: string) {
    const certificate = await this.certificates.findByCode(code);
    if (!certificate) return { valid: false, learnerName: null, courseTitle: null, issuedAt: null };
    return {
      valid: true,
      learnerName: certificate.learner_name,
      courseTitle: certificate.course_title,
      issuedAt: certificate.issued_at.toISOString(),
    };
  }
}
