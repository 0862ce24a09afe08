import { randomInt } from 'node:crypto';
import { UnrecoverableError } from 'bullmq';
import { withTransaction, type Config } from '@lms/core';
import { loadEnrollmentSummary } from '../enrollments/enrollment.repository.js';
import { publishCertificateIssued, type FollowUpDeps } from '../enrollments/follow-ups.js';
import type { JobHandler } from '../job-types.js';
import { certificateVerifyUrl } from '../links.js';
import { renderCertificatePdf } from './certificate-pdf.js';
import { lockOrCreateCertificate, storeCertificatePdf } from './certificate.repository.js';
import { writeCertificateFile } from './certificate-storage.js';

export interface CertificateDeps extends FollowUpDeps {
  config: Pick<Config, 'CERTIFICATE_STORAGE_DIR' | 'APP_DOMAIN'>;
}

/** Letters and digits that cannot be mistaken for one another when read aloud or retyped. */
const CODE_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';

/** A verification code like `LMS-7KQ2-XMPA-94RD` (60 random bits; the column's unique key guards the rest). */
export function newVerificationCode(): string {
  const group = () => Array.from({ length: 4 }, () => CODE_ALPHABET[randomInt(CODE_ALPHABET.length)]).join('');
  return `LMS-${group()}-${group()}-${group()}`;
}

/**
 * `certificate.render`: one certificate per completed enrolment, its PDF stored in the row or
 * in CERTIFICATE_STORAGE_DIR, then `certificate.issued` and the learner's email, once. The row
 * and its PDF are committed together, so a crash half-way leaves nothing and the retried job
 * starts over; a job repeated after success finds the stored certificate and publishes nothing.
 */
export function createCertificateHandler(deps: CertificateDeps): JobHandler<'certificate.render'> {
  const { pool, config } = deps;
  return async ({ enrollmentId }, ctx) => {
    const enrollment = await loadEnrollmentSummary(pool, enrollmentId);
    if (!enrollment) throw new UnrecoverableError(`enrollment ${enrollmentId} does not exist: no certificate`);
    if (enrollment.status !== 'completed') {
      throw new UnrecoverableError(`enrollment ${enrollmentId} is ${enrollment.status}, not completed: no certificate`);
    }
    const certificate = await withTransaction(
      pool,
      async (client) => {
        const row = await lockOrCreateCertificate(client, {
          enrollmentId,
          userId: enrollment.userId,
          courseId: enrollment.courseId,
          code: newVerificationCode(),
          learnerName: enrollment.learnerName,
          courseTitle: enrollment.courseTitle,
        });
        if (!row.stored) {
          // Rendered from the row's snapshot, so a re-render shows what the certificate states.
          const pdf = await renderCertificatePdf({
            learnerName: row.learnerName,
            courseTitle: row.courseTitle,
            issuedAt: row.issuedAt,
            code: row.code,
            verifyUrl: certificateVerifyUrl(config.APP_DOMAIN, row.code),
          });
          ctx.signal.throwIfAborted();
          const stored = config.CERTIFICATE_STORAGE_DIR
            ? { path: await writeCertificateFile(config.CERTIFICATE_STORAGE_DIR, enrollmentId, pdf) }
            : { pdf };
          await storeCertificatePdf(client, row.id, stored);
          ctx.log.info({ certificateId: row.id, bytes: pdf.length }, 'certificate rendered');
        }
        return row;
      },
      ctx.signal,
    );
    await publishCertificateIssued(deps, enrollment, certificate);
  };
}
